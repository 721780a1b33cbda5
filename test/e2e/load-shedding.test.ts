import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildGateway, upstreamTimeouts, type TestGateway } from '../helpers/build-gateway.js'
import { eventually, startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'
import { describeResponse, expectStatus } from '../helpers/expect-response.js'

let upstreams: MockUpstreams
let gateway: TestGateway

beforeAll(async () => {
  upstreams = await startMockUpstreams()
  gateway = await buildGateway({
    ...upstreams.env,
    // Calls and deadline roomy: the event loop is what this file is about, not whether a busy machine answers in 200 ms.
    AGGREGATE_DEADLINE_MS: '10000',
    ...upstreamTimeouts(5000),
    LOAD_SHEDDING_ENABLED: 'true',
    LOAD_SHEDDING_MAX_EVENT_LOOP_DELAY_MS: '50',
    LOAD_SHEDDING_MAX_EVENT_LOOP_UTILIZATION: '0',
    // The mean delay of 500 ms of 10 ms samples (the default): CPU contention adds a few ms to it, where a mean over
    // 100 ms once crossed 50 ms on a loaded machine and left /ready not-ready after the load was gone.
    LOAD_SHEDDING_SAMPLE_INTERVAL_MS: '500',
    LOAD_SHEDDING_RETRY_AFTER_SECONDS: '3'
  })
  // Healthy to begin with: on a loaded machine the gateway's own start can lag the loop through a first sample, and
  // the backstop then rightly sheds (503 AGG_ERR_OVERLOADED in the first test, once, with tsx threads at load 10).
  await eventually(async () => (await gateway.inject({ url: '/ready' })).statusCode === 200, 15_000, 'the gateway to report ready after its start')
})

afterAll(async () => {
  await gateway?.close()
  await upstreams?.close()
})

/** Keeps the event loop busy in slices, the way a CPU-bound handler would, for `durationMs`. */
async function blockEventLoop (durationMs: number) {
  const until = performance.now() + durationMs
  while (performance.now() < until) {
    const sliceEnd = performance.now() + 120
    while (performance.now() < sliceEnd) { /* busy */ }
    await new Promise((resolve) => setImmediate(resolve))
  }
}

describe('load shedding', () => {
  it('answers aggregate requests while the process is healthy', async () => {
    expectStatus(await gateway.inject({ url: '/aggregate/user-1' }), 200)
  })

  it('sheds aggregate requests with 503 and Retry-After while the event loop lags, but keeps /health and /ready answering', async () => {
    // Long enough that at least one whole 500 ms sample falls inside it.
    await blockEventLoop(1200)
    const shed = await gateway.inject({ url: '/aggregate/user-1' })
    expectStatus(shed, 503, 'right after the event loop was blocked for 600 ms')
    expect(shed.headers['retry-after']).toBe('3')
    expect(shed.json()).toMatchObject({ statusCode: 503, code: 'AGG_ERR_OVERLOADED', requestId: expect.any(String) })
    const upstreamRequests = (await upstreams.allStats()).profile.requests

    const health = await gateway.inject({ url: '/health' })
    expectStatus(health, 200, '/health')
    const ready = await gateway.inject({ url: '/ready' })
    expectStatus(ready, 503, '/ready')
    expect(ready.json()).toEqual({ status: 'not-ready', reasons: ['under-pressure'] })
    // A shed request never reaches an upstream or the aggregator, and is counted by what shed it: the event-loop delay
    // the backstop judged from the process's one sampler.
    expect((await upstreams.allStats()).profile.requests).toBe(upstreamRequests)
    const metrics = (await gateway.inject({ url: '/metrics' })).body
    expect(metrics).toMatch(/^aggregate_load_shed_total\{reason="eventLoopDelay"\} [1-9]/m)
  })

  it('recovers once the event loop is idle again', async () => {
    // Both at the same moment: under contention a later sample may see the loop late again.
    let ready: Awaited<ReturnType<typeof gateway.inject>> | undefined
    await eventually(async () => {
      const [aggregate, readiness] = await Promise.all([gateway.inject({ url: '/aggregate/user-1' }), gateway.inject({ url: '/ready' })])
      ready = readiness
      return aggregate.statusCode === 200 && readiness.statusCode === 200
    }, 15_000, 'the gateway to accept aggregates and report ready again')
    expect(ready!.json(), describeResponse(ready!)).toEqual({ status: 'ready' })
  })
})
