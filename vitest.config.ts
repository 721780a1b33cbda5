import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Compiles src/ once for the merge threads, workers and server processes the tests start (tsx would cost each one a second).
    globalSetup: ['test/helpers/compile-sources.ts'],
    // `npm run bench:unit`: benchmarks of internals, beside the tests of what they measure (the load benchmarks, which
    // reach the service only over HTTP, are bench/).
    benchmark: { include: ['test/**/*.bench.ts'] },
    // Two files at a time, each in its own process: every server listens on port 0, every fixture belongs to its file,
    // and no test depends on having the machine to itself (contended-test.sh checks that), so files need not queue.
    fileParallelism: true,
    pool: 'forks',
    maxWorkers: 2,
    // The files of one fork share its module cache: Fastify, undici and the app load once per fork instead of once per
    // file (about a quarter of the suite's time). Nothing in src keeps state at module level that a test could see; every
    // gateway, pool and mock is created and closed by its file.
    isolate: false,
    testTimeout: 30_000,
    // test/lib/resilience/deadline.test.ts forces garbage collections to show timeouts survive them.
    execArgv: ['--expose-gc'],
    hookTimeout: 30_000
  }
})
