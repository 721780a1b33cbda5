import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Files share a 2-core machine and start worker pools and servers: one at a time keeps timings honest.
    fileParallelism: false,
    testTimeout: 30_000,
    // test/lib/linked-signal.test.ts forces garbage collections to show timeouts survive them.
    execArgv: ['--expose-gc'],
    hookTimeout: 30_000
  }
})
