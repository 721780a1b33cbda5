import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { upstreamTimeouts } from './helpers/build-gateway.js'
import { compiled } from './helpers/compiled.js'
import { eventually, startMockUpstreams, type MockUpstreams } from './helpers/mock-upstreams.js'
import { describeResponse, expectStatus, fetchResponse } from './helpers/expect-response.js'

let upstreams: MockUpstreams

beforeAll(async () => { upstreams = await startMockUpstreams() })
afterAll(async () => { await upstreams?.close() })
beforeEach(async () => { await upstreams.reset() })

interface RunningServer { child: ChildProcess, origin: string, output: () => string }

const running: ChildProcess[] = []

/** Starts `src/server.ts`, compiled, as its own process, the way `npm start` runs the built one, and waits for it to listen. */
async function startServer (env: Record<string, string>): Promise<RunningServer> {
  const child = spawn(process.execPath, [fileURLToPath(compiled(new URL('../src/server.ts', import.meta.url)))], {
    env: { ...process.env, ...upstreams.env, PORT: '0', MERGE_POOL_THREADS: '1', LOAD_SHEDDING_ENABLED: 'false', OBSERVABILITY_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout!.on('data', (chunk) => { output += chunk })
  child.stderr!.on('data', (chunk) => { output += chunk })
  await eventually(async () => (output.match(/Server listening at/g) ?? []).length >= 2 || child.exitCode !== null, 20_000, 'the server to listen')
  // The gateway's own line, not the observability listener's (which says "server":"observability").
  const gatewayLine = output.split('\n').find((line) => /Server listening at/.test(line) && !line.includes('"observability"')) ?? ''
  const origin = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(gatewayLine)?.[1]
  if (!origin) {
    child.kill('SIGKILL')
    throw new Error(`server did not start:\n${output}`)
  }
  return { child, origin, output: () => output }
}

describe('the server process', () => {
  // Both processes start at once; each test then stops its own.
  let draining: RunningServer
  let stuck: RunningServer
  beforeAll(async () => {
    const started = await Promise.allSettled([
      // Calls and deadline roomy: the drained request must come back complete however busy the machine is.
      startServer({ AGGREGATE_DEADLINE_MS: '10000', ...upstreamTimeouts(5000) }),
      startServer({ SHUTDOWN_TIMEOUT_MS: '300', AGGREGATE_DEADLINE_MS: '20000', ...upstreamTimeouts(20_000) })
    ])
    for (const result of started) if (result.status === 'fulfilled') running.push(result.value.child)
    const failed = started.find((result) => result.status === 'rejected')
    if (failed) throw failed.reason
    ;[draining, stuck] = started.map((result) => (result as PromiseFulfilledResult<RunningServer>).value) as [RunningServer, RunningServer]
  })
  afterAll(() => { for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })

  it('finishes in-flight requests on SIGTERM, then exits 0', async () => {
    const server = draining
    // Long enough that the request is still in flight when SIGTERM arrives.
    await upstreams.mocks.orders.set({ latencyMs: 600 })
    const inFlight = fetchResponse(`${server.origin}/aggregate/user-1`)
    await eventually(async () => (await upstreams.mocks.orders.stats()).inFlight === 1, 5000, 'the request to reach the upstreams')

    const exited = once(server.child, 'exit')
    server.child.kill('SIGTERM')
    const response = await inFlight
    expectStatus(response, 200, 'the request in flight at SIGTERM')
    expect(response.body.meta.complete, describeResponse(response)).toBe(true)
    const [code] = await exited
    expect(code, server.output().slice(-2000)).toBe(0)
    expect(server.output()).toContain('shutting down')
    await expect(fetch(`${server.origin}/health`)).rejects.toThrow()
  })

  it('gives up on in-flight requests after SHUTDOWN_TIMEOUT_MS', async () => {
    const server = stuck
    await upstreams.mocks.profile.set({ mode: 'hang' })
    fetch(`${server.origin}/aggregate/user-2`).catch(() => {})
    await eventually(async () => (await upstreams.mocks.profile.stats()).inFlight === 1, 5000, 'the request to reach the upstreams')

    const startedAt = performance.now()
    const exited = once(server.child, 'exit')
    server.child.kill('SIGTERM')
    const [code] = await exited
    expect(code, server.output().slice(-2000)).toBe(1)
    // SHUTDOWN_TIMEOUT_MS is 300 and the request would hang for 20 s: the bound is many times the first, far from the second.
    expect(performance.now() - startedAt).toBeLessThan(5000)
    expect(server.output()).toContain('killed by timeout')
  })
})
