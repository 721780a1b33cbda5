import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildGateway, upstreamTimeouts, type TestGateway } from '../helpers/build-gateway.js'
import { describeResponse, describeStatuses, fetchResponse } from '../helpers/expect-response.js'
import { eventually, startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'

// The per-upstream policies of the call path (src/clients/steps), seen from outside: the aggregate's status and meta,
// the mocks' counters, /metrics and the log.

let upstreams: MockUpstreams
beforeAll(async () => { upstreams = await startMockUpstreams() })
afterEach(async () => { await upstreams.reset() })
afterAll(async () => { await upstreams?.close() })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
// Timeouts no busy machine misses, for tests that are not about them.
const ROOMY = {
  AGGREGATE_DEADLINE_MS: '3000',
  ...upstreamTimeouts(2000)
}

async function aggregate (gateway: TestGateway, userId = 'user-1') {
  const response = await gateway.inject({ url: `/aggregate/${userId}` })
  return { status: response.statusCode, headers: response.headers, body: response.json() }
}

/** The value of one Prometheus series, or undefined. */
async function metric (gateway: TestGateway, series: string): Promise<number | undefined> {
  const text = (await gateway.inject({ url: '/metrics' })).body
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('the circuit breaker', () => {
  const OPEN_MS = 1500
  // A hanging call times out at 300 ms, which counts as slow (≥ 250 ms); a healthy one on a busy machine, even a probe,
  // stays under 250 ms (at 80 ms, 80% of a 100 ms timeout, a healthy probe under CI's load counted as slow and reopened).
  const breakerEnv = (name: string) => ({
    [`UPSTREAM_${name}_TIMEOUT_MS`]: '300',
    [`UPSTREAM_${name}_CIRCUIT_SLOW_CALL_MS`]: '250',
    [`UPSTREAM_${name}_CIRCUIT_MIN_CALLS`]: '5',
    [`UPSTREAM_${name}_CIRCUIT_OPEN_MS`]: String(OPEN_MS)
  })

  it('opens on a hanging optional upstream: no more calls, the fallback at once; one probe per wait; closes once it heals', async () => {
    const gateway = await buildGateway({ ...upstreams.env, ...ROOMY, ...breakerEnv('RECOMMENDATIONS') })
    try {
      await upstreams.mocks.recommendations.set({ mode: 'hang' })
      for (let index = 0; index < 5; index++) {
        const { body } = await aggregate(gateway)
        expect(body.meta.upstreams.recommendations).toMatchObject({ status: 'timeout', circuit: index < 4 ? 'closed' : 'open' })
      }
      const openedAt = performance.now()
      expect(await metric(gateway, 'aggregate_circuit_state{upstream="recommendations",state="open"}')).toBe(1)
      // What the mock has seen of the five calls (on a starved machine the gateway may cut one before the mock reads it).
      const seenBeforeOpen = (await upstreams.mocks.recommendations.stats()).requests
      expect(seenBeforeOpen).toBeLessThanOrEqual(5)

      // While open: answered without calling it, with the section's fallback, well inside its 300 ms timeout.
      const whileOpen = []
      while (performance.now() - openedAt < OPEN_MS / 2) whileOpen.push(await aggregate(gateway))
      for (const { status, body } of whileOpen) {
        expect(status).toBe(200)
        expect(body.meta.upstreams.recommendations).toMatchObject({ status: 'circuit-open', attempts: 0, circuit: 'open', fallback: 'default' })
        expect(body.meta.upstreams.recommendations.latencyMs).toBeLessThan(100)
        expect(body.meta.upstreams.orders.status).toBe('ok')
      }
      expect((await upstreams.mocks.recommendations.stats()).requests, 'calls while open').toBe(seenBeforeOpen)

      // After the wait, one probe; it hangs too, so the circuit opens again for another wait.
      await sleep(OPEN_MS - (performance.now() - openedAt) + 50)
      // Five users at once, so that coalescing does not make them one call.
      const afterWait = await Promise.all(Array.from({ length: 5 }, (_, index) => aggregate(gateway, `user-${index}`)))
      const statuses = afterWait.map(({ body }) => body.meta.upstreams.recommendations.status)
      expect(statuses.filter((status) => status === 'timeout'), statuses.join()).toHaveLength(1)
      expect(statuses.filter((status) => status === 'circuit-open'), statuses.join()).toHaveLength(4)
      expect((await upstreams.mocks.recommendations.stats()).requests, 'one probe per wait').toBeLessThanOrEqual(seenBeforeOpen + 1)
      expect((await aggregate(gateway)).body.meta.upstreams.recommendations.circuit).toBe('open')

      // Healed: the next probe closes it, and calls flow again.
      await upstreams.mocks.recommendations.set({ mode: 'normal' })
      await sleep(OPEN_MS + 50)
      const healed = await aggregate(gateway)
      expect(healed.body.meta.upstreams.recommendations).toMatchObject({ status: 'ok', attempts: 1, circuit: 'closed' })
      expect(healed.body.meta.complete).toBe(true)
      expect(await metric(gateway, 'aggregate_circuit_state{upstream="recommendations",state="closed"}')).toBe(1)
      expect(await metric(gateway, 'aggregate_circuit_transitions_total{upstream="recommendations",to="open"}')).toBe(2)
      expect(await metric(gateway, 'aggregate_circuit_transitions_total{upstream="recommendations",to="closed"}')).toBe(1)
    } finally {
      await gateway.close()
    }
  }, 30_000)

  it('answers 503 with Retry-After at once while the required upstream\'s circuit is open, calling no other upstream', async () => {
    const gateway = await buildGateway({ ...upstreams.env, ...ROOMY, ...breakerEnv('PROFILE') })
    try {
      await upstreams.mocks.profile.set({ mode: 'error', failureStatus: 500 })
      for (let index = 0; index < 5; index++) expect((await aggregate(gateway)).status).toBe(502)
      const before = await upstreams.allStats()
      const refused = await aggregate(gateway)
      expect(refused.status).toBe(503)
      expect(refused.body.code).toBe('AGG_ERR_UPSTREAM_CIRCUIT_OPEN')
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1)
      expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(Math.ceil(OPEN_MS / 1000))
      const after = await upstreams.allStats()
      for (const name of ['profile', 'orders', 'recommendations', 'inventory', 'loyalty'] as const) {
        expect(after[name].requests, name).toBe(before[name].requests)
      }
    } finally {
      await gateway.close()
    }
  })

  it('does not count a 404 against the upstream', async () => {
    const gateway = await buildGateway({ ...upstreams.env, ...ROOMY, ...breakerEnv('PROFILE'), UPSTREAM_PROFILE_TIMEOUT_MS: '1000' })
    try {
      for (let index = 0; index < 10; index++) expect((await aggregate(gateway, `unknown-${index}`)).status).toBe(404)
      expect((await aggregate(gateway)).body.meta.upstreams.profile.circuit).toBe('closed')
    } finally {
      await gateway.close()
    }
  })
})

describe('retries', () => {
  it('retries a 503 once and a connection reset once; never a 500', async () => {
    const gateway = await buildGateway({ ...upstreams.env, ...ROOMY, UPSTREAM_ORDERS_CIRCUIT_BREAKER: 'false' })
    try {
      await upstreams.mocks.orders.set({ failureRate: 1, failureStatus: 503 })
      const unavailable = await aggregate(gateway)
      expect(unavailable.body.meta.upstreams.orders).toMatchObject({ status: 'error', httpStatus: 503, attempts: 2 })
      expect((await upstreams.mocks.orders.stats()).requests).toBe(2)

      await upstreams.reset()
      await upstreams.mocks.orders.set({ mode: 'reset' })
      expect((await aggregate(gateway)).body.meta.upstreams.orders).toMatchObject({ status: 'error', attempts: 2 })
      expect((await upstreams.mocks.orders.stats()).resets).toBe(2)

      await upstreams.reset()
      await upstreams.mocks.orders.set({ failureRate: 1, failureStatus: 500 })
      expect((await aggregate(gateway)).body.meta.upstreams.orders).toMatchObject({ status: 'error', httpStatus: 500, attempts: 1 })
      expect((await upstreams.mocks.orders.stats()).requests).toBe(1)
    } finally {
      await gateway.close()
    }
  })

  it('makes a response complete when the retry succeeds', async () => {
    const gateway = await buildGateway({
      ...upstreams.env, ...ROOMY, UPSTREAM_ORDERS_RETRY_BUDGET_PERCENT: '100', UPSTREAM_ORDERS_CIRCUIT_BREAKER: 'false'
    })
    try {
      await upstreams.mocks.orders.set({ failureRate: 0.5, failureStatus: 503 })
      const responses = []
      for (let index = 0; index < 40; index++) {
        const response = await aggregate(gateway, `user-${index}`)
        expect(response.status, describeResponse({ status: response.status, body: response.body })).toBe(200)
        responses.push(response)
      }
      const retried = responses.filter(({ body }) => body.meta.upstreams.orders.attempts === 2)
      const rescued = retried.filter(({ body }) => body.meta.upstreams.orders.status === 'ok')
      // Half the calls fail, and half of their retries succeed: 20 and 10 expected; far fewer would mean no retries.
      expect(retried.length).toBeGreaterThan(5)
      expect(rescued.length).toBeGreaterThan(1)
      for (const { body } of rescued) expect(body.meta.upstreams.orders.fallback).toBe('none')
    } finally {
      await gateway.close()
    }
  })

  it('keeps retries of an upstream that fails everything within the budget\'s share of its calls', async () => {
    const gateway = await buildGateway({ ...upstreams.env, ...ROOMY, UPSTREAM_ORDERS_CIRCUIT_BREAKER: 'false' })
    try {
      await upstreams.mocks.orders.set({ failureRate: 1, failureStatus: 503 })
      const CALLS = 60
      for (let index = 0; index < CALLS; index++) await aggregate(gateway, `user-${index}`)
      const { requests } = await upstreams.mocks.orders.stats()
      // 20% of the calls in the window, plus a floor of 3.
      expect(requests - CALLS).toBeLessThanOrEqual(Math.floor(CALLS * 0.2) + 3)
      expect(requests - CALLS).toBeGreaterThanOrEqual(Math.floor(CALLS * 0.2))
      expect(await metric(gateway, 'aggregate_upstream_retries_total{upstream="orders",result="made"}')).toBe(requests - CALLS)
      expect(await metric(gateway, 'aggregate_upstream_retries_total{upstream="orders",result="skipped-budget"}')).toBe(CALLS - (requests - CALLS))
    } finally {
      await gateway.close()
    }
  })

  it('does not retry when what is left of the deadline cannot fit another try', async () => {
    const gateway = await buildGateway({ ...upstreams.env, ...ROOMY, UPSTREAM_ORDERS_TIMEOUT_MS: '1000', UPSTREAM_ORDERS_CIRCUIT_BREAKER: 'false' })
    try {
      // Fails after 800 ms of a 1000 ms budget: 200 ms left is less than a typical call (a quarter of the timeout, with
      // no latency known yet).
      await upstreams.mocks.orders.set({ failureRate: 1, failureStatus: 503, latencyMs: 800 })
      expect((await aggregate(gateway)).body.meta.upstreams.orders).toMatchObject({ status: 'error', attempts: 1 })
      expect(await metric(gateway, 'aggregate_upstream_retries_total{upstream="orders",result="skipped-deadline"}')).toBe(1)
    } finally {
      await gateway.close()
    }
  })

  it('retries a try that outlasts its per-try timeout, within the call\'s budget', async () => {
    const gateway = await buildGateway({
      ...upstreams.env, ...ROOMY, UPSTREAM_ORDERS_RETRY_PER_TRY_TIMEOUT_MS: '500', UPSTREAM_ORDERS_CIRCUIT_BREAKER: 'false'
    })
    try {
      // The first request falls in the tail (seeded: the first draw of the orders mock at rate 0.5), the retry not.
      await upstreams.mocks.orders.set({ tailRate: 0.5, tailLatencyMs: 5000 })
      const responses = []
      for (let index = 0; index < 6; index++) responses.push((await aggregate(gateway, `user-${index}`)).body.meta.upstreams.orders)
      const tail = (await upstreams.mocks.orders.stats()).tail
      expect(tail).toBeGreaterThan(0)
      const retried = responses.filter((report) => report.attempts === 2)
      expect(retried.length).toBeGreaterThan(0)
      for (const report of retried) expect(report.status === 'ok' || report.status === 'timeout').toBe(true)
      expect(retried.some((report) => report.status === 'ok')).toBe(true)
      // The abandoned tries were cancelled at the upstream.
      await eventually(async () => (await upstreams.mocks.orders.stats()).aborted === tail, 2000, 'every tail try aborted')
    } finally {
      await gateway.close()
    }
  })
})

describe('hedging', () => {
  it('sends a hedge when a call outlasts the recent p95, uses the first answer, aborts the loser, within 10% extra calls', async () => {
    const gateway = await buildGateway({
      ...upstreams.env, ...ROOMY, UPSTREAM_RECOMMENDATIONS_HEDGE: 'auto'
    })
    try {
      await upstreams.mocks.recommendations.set({ latencyMs: 10, tailRate: 0.05, tailLatencyMs: 1000 })
      const reports = []
      for (let index = 0; index < 120; index++) reports.push((await aggregate(gateway, `user-${index % 7}`)).body.meta.upstreams.recommendations)
      const stats = await upstreams.mocks.recommendations.stats()
      const hedged = reports.filter((report) => report.hedge !== undefined)
      const won = hedged.filter((report) => report.hedge === 'won')
      expect(stats.tail).toBeGreaterThan(0)
      expect(won.length).toBeGreaterThan(0)
      // A won hedge answered long before the tail's second.
      for (const report of won) {
        expect(report.status).toBe('ok')
        expect(report.attempts).toBe(2)
        expect(report.latencyMs).toBeLessThan(900)
      }
      expect(hedged.length).toBeLessThanOrEqual(Math.ceil(reports.length * 0.1))
      expect(stats.requests).toBeLessThanOrEqual(reports.length + hedged.length)
      // Every primary a hedge beat was cancelled at the upstream: it was in its tail. (A loser that had already been
      // answered when the winner arrived, as happens on a busy machine, had nothing left to cancel.)
      let seen = stats
      await eventually(async () => {
        seen = await upstreams.mocks.recommendations.stats()
        return seen.inFlight === 0 && seen.aborted >= won.length
      }, 3000, 'every beaten primary aborted').catch((error: Error) => {
        throw new Error(`${error.message}: ${reports.length} calls, ${hedged.length} hedged, ${won.length} won, upstream saw ${JSON.stringify(seen)}`)
      })
      expect(seen.completed + seen.aborted).toBe(seen.requests)
      expect(await metric(gateway, 'aggregate_upstream_hedges_total{upstream="recommendations",result="won"}')).toBe(won.length)
    } finally {
      await gateway.close()
    }
  }, 60_000)

  it('is off unless asked for', async () => {
    const gateway = await buildGateway({ ...upstreams.env, ...ROOMY })
    try {
      await upstreams.mocks.recommendations.set({ latencyMs: 5, tailRate: 0.2, tailLatencyMs: 300 })
      for (let index = 0; index < 40; index++) expect((await aggregate(gateway)).body.meta.upstreams.recommendations.hedge).toBeUndefined()
      expect((await upstreams.mocks.recommendations.stats()).requests).toBe(40)
    } finally {
      await gateway.close()
    }
  }, 30_000)
})

describe('coalescing', () => {
  let gateway: TestGateway
  beforeAll(async () => {
    // Admission would queue and shed part of a burst of 50; here only coalescing is under test.
    gateway = await buildGateway({ ...upstreams.env, ...ROOMY, ADMISSION_INITIAL_LIMIT: '100' }, { listen: true })
  })
  afterAll(async () => { await gateway?.close() })

  it('answers 50 concurrent aggregates for one user with at most two calls to each upstream', async () => {
    for (const name of ['profile', 'orders', 'recommendations', 'inventory', 'loyalty'] as const) await upstreams.mocks[name].set({ latencyMs: 300 })
    const responses = await Promise.all(Array.from({ length: 50 }, () => fetchResponse(`${gateway.origin}/aggregate/user-7`)))
    expect(responses.filter((response) => response.status !== 200), describeStatuses(responses)).toEqual([])
    const stats = await upstreams.allStats()
    for (const name of ['profile', 'orders', 'recommendations', 'inventory', 'loyalty'] as const) {
      expect(stats[name].requests, name).toBeLessThanOrEqual(2)
      const shared = responses.filter((response) => (response.body as { meta: { upstreams: Record<string, { coalesced?: boolean }> } }).meta.upstreams[name]!.coalesced === true)
      expect(shared.length, name).toBeGreaterThanOrEqual(48)
    }
    // Every response is whole, and the same.
    const sections = responses.map((response) => { const { meta, ...rest } = response.body as { meta: unknown }; return JSON.stringify(rest) })
    expect(new Set(sections).size).toBe(1)
    for (const response of responses) expect((response.body as { meta: { complete: boolean } }).meta.complete).toBe(true)
  })

  it('lets a caller that disconnects leave without failing the others, and cancels the call when the last one leaves', async () => {
    for (const name of ['profile', 'orders', 'recommendations', 'inventory', 'loyalty'] as const) await upstreams.mocks[name].set({ latencyMs: 500 })
    const leaving = new AbortController()
    const first = fetch(`${gateway.origin}/aggregate/user-8`, { signal: leaving.signal }).catch((error: Error) => error)
    await eventually(async () => (await upstreams.mocks.orders.stats()).inFlight === 1, 2000, 'the first call in flight')
    const staying = Array.from({ length: 5 }, () => fetchResponse(`${gateway.origin}/aggregate/user-8`))
    await sleep(50)
    leaving.abort()
    expect(await first).toBeInstanceOf(Error)
    const responses = await Promise.all(staying)
    expect(responses.map((response) => response.status), describeStatuses(responses)).toEqual([200, 200, 200, 200, 200])
    const stats = await upstreams.allStats()
    expect(stats.orders.requests).toBe(1)
    expect(stats.orders.aborted).toBe(0)

    // All callers gone: the shared call is cancelled at the upstream.
    await upstreams.reset()
    await upstreams.mocks.orders.set({ latencyMs: 2000 })
    const controllers = Array.from({ length: 3 }, () => new AbortController())
    const gone = controllers.map((controller) => fetch(`${gateway.origin}/aggregate/user-9`, { signal: controller.signal }).catch((error: Error) => error))
    await eventually(async () => (await upstreams.mocks.orders.stats()).inFlight === 1, 2000, 'the shared call in flight')
    for (const controller of controllers) controller.abort()
    await Promise.all(gone)
    await eventually(async () => (await upstreams.mocks.orders.stats()).aborted === 1, 2000, 'the shared call aborted')
    expect((await upstreams.mocks.orders.stats()).requests).toBe(1)
  })
})

describe('coalescing behind admission', () => {
  let gateway: TestGateway
  beforeAll(async () => {
    // A limit of 4: without letting same-user requests join, 46 of the burst would queue, be let in after the first
    // calls landed and call every upstream again (or be shed).
    gateway = await buildGateway({ ...upstreams.env, ...ROOMY, ADMISSION_INITIAL_LIMIT: '4', ADMISSION_MIN_LIMIT: '4', ADMISSION_MAX_LIMIT: '4' }, { listen: true })
  })
  afterAll(async () => { await gateway?.close() })

  it('lets a burst for one user join the aggregate already admitted: every request answered, one call per upstream', async () => {
    await upstreams.reset()
    for (const name of ['profile', 'orders', 'recommendations', 'inventory', 'loyalty'] as const) await upstreams.mocks[name].set({ latencyMs: 300 })
    const first = fetchResponse(`${gateway.origin}/aggregate/user-70`)
    await eventually(async () => (await upstreams.mocks.orders.stats()).inFlight === 1, 2000, 'the first call in flight')
    const burst = await Promise.all(Array.from({ length: 49 }, () => fetchResponse(`${gateway.origin}/aggregate/user-70`)))
    const responses = [await first, ...burst]
    expect(responses.filter((response) => response.status !== 200), describeStatuses(responses)).toEqual([])
    const stats = await upstreams.allStats()
    for (const name of ['profile', 'orders', 'recommendations', 'inventory', 'loyalty'] as const) expect(stats[name].requests, name).toBe(1)
  })
})
