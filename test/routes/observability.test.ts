import { spawnSync } from 'node:child_process'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { buildGateway, upstreamTimeouts, type TestGateway } from '../helpers/build-gateway.js'
import { startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'
import { describeStatuses, expectStatus, fetchResponse } from '../helpers/expect-response.js'

let upstreams: MockUpstreams

beforeAll(async () => { upstreams = await startMockUpstreams() })
afterAll(async () => { await upstreams?.close() })
beforeEach(async () => { await upstreams.reset() })

const hasPromtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0

/** The value of one sample in Prometheus text format, e.g. `aggregate_fallbacks_total{upstream="orders",kind="default"}`. */
function sample (metrics: string, series: string): number {
  const line = metrics.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line ? Number(line.slice(series.length + 1)) : 0
}

// Calls and deadline roomy: these tests count and stream, they do not test meeting a deadline on a busy machine.
const roomy = () => ({
  ...upstreams.env,
  AGGREGATE_DEADLINE_MS: '10000',
  ...upstreamTimeouts(5000)
})
// Recommendations cut off at 200 ms, everything else roomy: a partial response without waiting out a 5 s timeout. One
// dashboard at a time, for the stream tests.
let partialGateway: TestGateway
beforeAll(async () => { partialGateway = await buildGateway({ ...roomy(), UPSTREAM_RECOMMENDATIONS_TIMEOUT_MS: '200', DASHBOARD_MAX_CLIENTS: '1' }, { listen: true }) })
afterAll(async () => { await partialGateway?.close() })

describe('GET /metrics', () => {
  let gateway: TestGateway

  // No admission limit and a queue long enough for the burst below: this is about counting, not turning work away.
  beforeAll(async () => {
    gateway = await buildGateway({ ...roomy(), MERGE_POOL_THREADS: '2', MERGE_POOL_MAX_QUEUE: '1000', ADMISSION_ENABLED: 'false' }, { listen: true })
  })
  afterAll(async () => { await gateway?.close() })

  const metrics = async (on: TestGateway = gateway) => {
    const response = await fetchResponse(`${on.origin}/metrics`)
    expectStatus(response, 200, 'GET /metrics')
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    return response.text
  }

  it('counts the work of every merge thread exactly', async () => {
    const merges = 60
    const before = await metrics()
    const responses = await Promise.all(Array.from({ length: merges }, (_, index) => fetchResponse(`${gateway.origin}/aggregate/user-${index % 40}`)))
    expect(responses.filter((response) => response.status !== 200).length, `statuses: ${describeStatuses(responses)}`).toBe(0)
    const after = await metrics()
    // 60 merges spread over two threads, each counted with Atomics in shared memory: none lost, none doubled.
    expect(sample(after, 'aggregate_merge_tasks_total') - sample(before, 'aggregate_merge_tasks_total')).toBe(merges)
    expect(sample(after, 'aggregate_merge_candidates_scored_total')).toBeGreaterThan(sample(before, 'aggregate_merge_candidates_scored_total'))
    expect(sample(after, 'aggregate_responses_total{result="complete"}') - sample(before, 'aggregate_responses_total{result="complete"}')).toBe(merges)
    expect(sample(after, 'aggregate_merge_run_seconds_count') - sample(before, 'aggregate_merge_run_seconds_count')).toBe(merges)
  })

  it('reports upstream outcomes, fallbacks and partial responses', async () => {
    const before = await metrics(partialGateway)
    await upstreams.mocks.recommendations.set({ mode: 'hang' })
    await upstreams.mocks.loyalty.set({ mode: 'error' })
    expectStatus(await fetchResponse(`${partialGateway.origin}/aggregate/fresh-user`), 200)
    const after = await metrics(partialGateway)
    const delta = (series: string) => sample(after, series) - sample(before, series)
    expect(delta('aggregate_upstream_call_duration_seconds_count{upstream="recommendations",outcome="timeout"}')).toBe(1)
    expect(delta('aggregate_upstream_call_duration_seconds_count{upstream="loyalty",outcome="error"}')).toBe(1)
    expect(delta('aggregate_upstream_call_duration_seconds_count{upstream="orders",outcome="ok"}')).toBe(1)
    expect(delta('aggregate_fallbacks_total{upstream="recommendations",kind="default"}')).toBe(1)
    expect(delta('aggregate_responses_total{result="partial"}')).toBe(1)
    expect(delta('http_request_duration_seconds_count{method="GET",route="/aggregate/:userId",status_code="200"}')).toBe(1)
  })

  it('exposes bulkhead limits, the worker pool, the event loop and memory', async () => {
    const text = await metrics()
    expect(sample(text, 'aggregate_bulkhead_concurrency_limit{upstream="orders"}')).toBe(50)
    expect(sample(text, 'aggregate_bulkhead_queue_limit{upstream="orders"}')).toBe(100)
    expect(sample(text, 'aggregate_merge_pool_threads')).toBe(2)
    expect(sample(text, 'aggregate_merge_pool_queue_limit')).toBe(1000)
    expect(text).toMatch(/^aggregate_upstream_connections\{upstream="orders",state="connected"\} \d+/m)
    expect(text).toMatch(/^aggregate_event_loop_utilization [\d.]+/m)
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m)
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d+/m)
  })

  it.skipIf(!hasPromtool)('passes promtool check metrics', async () => {
    const result = spawnSync('promtool', ['check', 'metrics'], { input: await metrics(), encoding: 'utf8' })
    expect(result.stdout + result.stderr).toBe('')
    expect(result.status, result.stdout + result.stderr).toBe(0)
  })
})

describe('the dashboard stream', () => {
  /** Reads server-sent events from `/dashboard/stream` until `count` have arrived. */
  async function readEvents (response: Response, count: number) {
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let buffered = ''
    const events: any[] = []
    while (events.length < count) {
      const { value, done } = await reader.read()
      if (done) break
      buffered += decoder.decode(value, { stream: true })
      let end
      while ((end = buffered.indexOf('\n\n')) !== -1) {
        events.push(JSON.parse(buffered.slice(0, end).replace(/^data: /, '')))
        buffered = buffered.slice(end + 2)
      }
    }
    return { events, reader }
  }

  it('keeps sending snapshots, and turns away dashboards over the limit', async () => {
    const controller = new AbortController()
    const response = await fetch(`${partialGateway.origin}/dashboard/stream`, { signal: controller.signal })
    expect(response.status, 'GET /dashboard/stream').toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    await fetch(`${partialGateway.origin}/aggregate/user-1`)
    // The first snapshot comes on connect, the next ones once a second (sooner when an upstream's health changes).
    const { events } = await readEvents(response, 3)
    expect(events[2].at).toBeGreaterThan(events[0].at)
    expect(Object.keys(events[1].upstreams)).toEqual(['profile', 'orders', 'recommendations', 'inventory', 'loyalty'])
    expect(events[1].upstreams.orders).toMatchObject({ concurrency: 50, maxQueue: 100 })
    expect(events[1].mergePool.threads).toBe(1)

    const second = await fetchResponse(`${partialGateway.origin}/dashboard/stream`)
    expectStatus(second, 503, 'a second dashboard over DASHBOARD_MAX_CLIENTS=1')
    expect(second.headers.get('retry-after')).toBe('2')
    controller.abort()
  })

  it('serves the page with a strict content security policy', async () => {
    const page = await fetchResponse(`${partialGateway.origin}/dashboard`)
    expectStatus(page, 200)
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
    expect(page.text).toContain('<script src="/dashboard/app.js" defer></script>')
    expect((await fetch(`${partialGateway.origin}/dashboard/app.js`)).headers.get('content-type')).toMatch(/^text\/javascript/)
  })

  it('does not hold up shutdown', async () => {
    const other = await buildGateway(upstreams.env, { listen: true })
    const stream = await fetch(`${other.origin}/dashboard/stream`)
    expect(stream.status, 'GET /dashboard/stream').toBe(200)
    const startedAt = performance.now()
    await other.close()
    // An open stream would otherwise hold the close for DASHBOARD_STREAM_MAX_SECONDS (300 s); closing takes milliseconds.
    expect(performance.now() - startedAt).toBeLessThan(5000)
  })
})

describe('operator settings', () => {
  it('turn /metrics and /dashboard off', async () => {
    // Roomy calls: the aggregate below only shows the gateway still serves (the 200 ms default failed it once under load).
    const gateway = await buildGateway({ ...roomy(), METRICS_ENABLED: 'false', DASHBOARD_ENABLED: 'false' })
    try {
      for (const url of ['/metrics', '/dashboard', '/dashboard/stream']) expectStatus(await gateway.inject({ url }), 404, url)
      expectStatus(await gateway.inject({ url: '/aggregate/user-1' }), 200)
    } finally {
      await gateway.close()
    }
  })

  it('keep /metrics and /dashboard on their own port by default, never on the aggregate port', async () => {
    const gateway = await buildGateway({ ...upstreams.env, OBSERVABILITY_ON_GATEWAY_PORT: 'false', OBSERVABILITY_PORT: '0' }, { listen: true })
    try {
      expect(gateway.observabilityOrigin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      expect(gateway.observabilityOrigin).not.toBe(gateway.origin)
      expectStatus(await fetchResponse(`${gateway.origin}/metrics`), 404, 'gateway port /metrics')
      expectStatus(await fetchResponse(`${gateway.origin}/dashboard`), 404, 'gateway port /dashboard')
      expectStatus(await fetchResponse(`${gateway.observabilityOrigin}/metrics`), 200, 'observability port /metrics')
      expectStatus(await fetchResponse(`${gateway.observabilityOrigin}/dashboard`), 200, 'observability port /dashboard')
      expectStatus(await fetchResponse(`${gateway.observabilityOrigin}/aggregate/user-1`), 404, 'observability port /aggregate')
    } finally {
      await gateway.close()
    }
  })
})
