import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { MockStats } from '../../mock-services/mock-service.js'
import { UPSTREAM_NAMES, type BuiltInUpstream } from '../../src/lib/contract/upstreams.js'
import { buildGateway, rawGet, upstreamTimeouts, type TestGateway } from '../helpers/build-gateway.js'
import { eventually, startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'
import { describeResponse, expectStatus } from '../helpers/expect-response.js'

let upstreams: MockUpstreams
// Three gateways, so that only a test of a timeout or deadline depends on one: `gateway` gives every call 5 s and the
// request 10 s, which no busy machine misses; `timedGateway` keeps the required profile and orders at 4 s and cuts
// recommendations, inventory and loyalty off at 200 ms; `shortDeadlineGateway` has the production defaults (300 ms
// deadline, 200 ms calls). Bounds on elapsed time are several times the budget under test.
let gateway: TestGateway
let timedGateway: TestGateway
let shortDeadlineGateway: TestGateway
const ROOMY_TIMEOUT_MS = 5000
const SHORT_TIMEOUT_MS = 200
const SHORT_DEADLINE_MS = 300

beforeAll(async () => {
  upstreams = await startMockUpstreams()
  ;[gateway, timedGateway, shortDeadlineGateway] = await Promise.all([
    buildGateway({ ...upstreams.env, AGGREGATE_DEADLINE_MS: '10000', ...upstreamTimeouts(ROOMY_TIMEOUT_MS) }, { listen: true }),
    buildGateway({
      ...upstreams.env,
      AGGREGATE_DEADLINE_MS: '5000',
      ...upstreamTimeouts(4000, ['profile', 'orders']),
      ...upstreamTimeouts(SHORT_TIMEOUT_MS, ['recommendations', 'inventory', 'loyalty'])
    }),
    buildGateway({ ...upstreams.env, AGGREGATE_DEADLINE_MS: String(SHORT_DEADLINE_MS) })
  ])
})

afterAll(async () => {
  await Promise.all([gateway?.close(), timedGateway?.close(), shortDeadlineGateway?.close()])
  await upstreams?.close()
})

beforeEach(async () => { await upstreams.reset() })

const aggregate = (userId: string, headers: Record<string, string> = {}, on: TestGateway = gateway) =>
  on.inject({ method: 'GET', url: `/aggregate/${userId}`, headers })

/**
 * Waits until no call to `name` is left at its mock: every call the mock received was aborted, none answered. On a
 * starved machine the gateway can cut a call before the mock, in the same process, has even read it; the mock then saw
 * none (under contended-test a wait for `aborted === 1` timed out this way).
 */
async function expectCallAborted (name: BuiltInUpstream) {
  let seen: MockStats | undefined
  await eventually(async () => {
    seen = await upstreams.mocks[name].stats()
    return seen.inFlight === 0 && seen.requests <= 1 && seen.aborted === seen.requests
  }, 3000, () => `the ${name} call to be aborted; its mock counted ${JSON.stringify(seen)}`)
}

describe('GET /aggregate/:userId', () => {
  it('merges all five upstreams into one complete response', async () => {
    const response = await aggregate('user-42')
    expectStatus(response, 200)
    expect(response.headers['x-aggregate-complete'], describeResponse(response)).toBe('true')
    const body = response.json()
    expect(body.userId).toBe('user-42')
    expect(body.profile).toMatchObject({ id: 'user-42', region: expect.any(String) })
    expect(body.orders.count).toBeGreaterThan(0)
    expect(body.orders.spendByCategory.length).toBeGreaterThan(0)
    expect(body.recommendations).toHaveLength(10)
    expect(body.recommendations.filter((item: { available: number }) => !(item.available > 0)), 'recommended but not in stock').toEqual([])
    expect(body.inventory.trackedProducts).toBeGreaterThan(0)
    expect(body.loyalty).toMatchObject({ points: expect.any(Number), progress: expect.any(Number) })
    expect(body.meta.complete, describeResponse(response)).toBe(true)
    for (const name of UPSTREAM_NAMES) expect(body.meta.upstreams[name], name).toMatchObject({ status: 'ok', fallback: 'none' })
  })

  it('returns the same body for the same user (deterministic upstreams)', async () => {
    const [firstResponse, secondResponse] = [await aggregate('user-7'), await aggregate('user-7')]
    expectStatus(firstResponse, 200)
    expectStatus(secondResponse, 200)
    const [first, second] = [firstResponse.json(), secondResponse.json()]
    delete first.meta
    delete second.meta
    expect(second).toEqual(first)
  })

  it('has all five upstream calls in flight at the same moment', async () => {
    // Every upstream holds its call until the client leaves, so all five are in flight together only if the gateway
    // started them together (one after another, the first would never let the second start); no time window to catch.
    for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ mode: 'hang' })
    const client = new AbortController()
    const pending = fetch(`${gateway.origin}/aggregate/user-1`, { signal: client.signal }).catch(() => {})
    let inFlight: number[] = []
    const allInFlight = async (count: number) => {
      const stats = await upstreams.allStats()
      inFlight = UPSTREAM_NAMES.map((name) => stats[name].inFlight)
      return inFlight.every((calls) => calls === count)
    }
    const seen = () => `calls in flight (${UPSTREAM_NAMES.join(', ')}): ${inFlight.join(', ')}`
    try {
      await eventually(() => allInFlight(1), 10_000, () => `all five upstreams to be in flight together; ${seen()}`)
    } finally {
      client.abort()
      await pending
      // The client's departure aborts the five calls: none of them is left for the next test.
      await eventually(() => allInFlight(0), ROOMY_TIMEOUT_MS, () => `the calls to be aborted; ${seen()}`)
    }
  })

  it('passes the request id and the remaining budget to every upstream', async () => {
    const response = await aggregate('user-2', { 'x-request-id': 'trace-abc-123' })
    expectStatus(response, 200)
    expect(response.headers['x-request-id']).toBe('trace-abc-123')
    const stats = await upstreams.allStats()
    for (const name of UPSTREAM_NAMES) {
      expect(stats[name].lastRequestId, name).toBe('trace-abc-123')
      // What is left of the call's own timeout (the 10 s deadline leaves more): positive, and at most that timeout.
      expect(stats[name].lastDeadlineMs, name).toBeGreaterThan(0)
      expect(stats[name].lastDeadlineMs, name).toBeLessThanOrEqual(ROOMY_TIMEOUT_MS)
    }
  })

  it('replaces an unusable x-request-id with a generated one', async () => {
    const response = await aggregate('user-2', { 'x-request-id': 'bad id with spaces' })
    expect(response.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('answers a partial 200 within the deadline when an optional upstream hangs, and aborts that call', async () => {
    await upstreams.mocks.recommendations.set({ mode: 'hang' })
    const startedAt = performance.now()
    const response = await aggregate('user-3', {}, timedGateway)
    const elapsed = performance.now() - startedAt
    expectStatus(response, 200)
    expect(response.headers['x-aggregate-complete']).toBe('false')
    const body = response.json()
    expect(body.meta.complete).toBe(false)
    expect(body.meta.upstreams.recommendations).toMatchObject({ status: 'timeout', fallback: 'default' })
    expect(body.recommendations).toEqual([])
    expect(body.orders.count, describeResponse(response)).toBeGreaterThan(0)
    // Cut off at the call's 200 ms timeout: ten times that still tells it from waiting out the 5 s deadline.
    expect(elapsed).toBeLessThan(SHORT_TIMEOUT_MS * 10)
    await expectCallAborted('recommendations')
  })

  it('answers 504 within the deadline when the required profile upstream hangs', async () => {
    await upstreams.mocks.profile.set({ mode: 'hang' })
    const startedAt = performance.now()
    const response = await aggregate('user-4', {}, shortDeadlineGateway)
    expect(performance.now() - startedAt).toBeLessThan(SHORT_DEADLINE_MS * 5)
    expectStatus(response, 504)
    expect(response.json()).toMatchObject({ statusCode: 504, code: 'AGG_ERR_UPSTREAM_TIMEOUT', requestId: expect.any(String) })
    await expectCallAborted('profile')
  })

  it('answers 502 when the profile upstream fails, and 404 when it does not know the user', async () => {
    await upstreams.mocks.profile.set({ mode: 'error' })
    const failed = await aggregate('user-5')
    expectStatus(failed, 502)
    expect(failed.json()).toMatchObject({ code: 'AGG_ERR_UPSTREAM_FAILED', message: 'The profile upstream failed' })
    expect(failed.body).not.toContain('simulated failure')

    await upstreams.mocks.profile.set({ mode: 'normal' })
    const missing = await aggregate('unknown-user')
    expectStatus(missing, 404)
    expect(missing.json()).toMatchObject({ code: 'AGG_ERR_USER_NOT_FOUND' })
  })

  it('stops waiting for the other upstreams once the required one has failed', async () => {
    await upstreams.mocks.profile.set({ mode: 'error' })
    await upstreams.mocks.orders.set({ mode: 'hang' })
    const startedAt = performance.now()
    const response = await aggregate('user-6')
    expectStatus(response, 502)
    // The hanging orders call is cancelled at once instead of running into its 5 s timeout.
    expect(performance.now() - startedAt).toBeLessThan(ROOMY_TIMEOUT_MS / 2)
    await expectCallAborted('orders')
  })

  it.each([
    ['malformed JSON', { mode: 'malformed' as const }, 'malformed', () => gateway],
    ['a 500', { mode: 'error' as const }, 'error', () => gateway],
    ['a reset connection', { mode: 'reset' as const }, 'error', () => gateway],
    // Loyalty's 200 ms timeout on the timed gateway cuts the trickle off.
    ['a trickling body', { mode: 'slow-body' as const }, 'timeout', () => timedGateway]
  ])('falls back to a default when an optional upstream sends %s', async (_label, settings, status, on) => {
    await upstreams.mocks.loyalty.set(settings)
    const response = await aggregate('user-8', {}, on())
    expectStatus(response, 200)
    const body = response.json()
    expect(body.meta.upstreams.loyalty).toMatchObject({ status, fallback: 'default' })
    expect(body.loyalty).toMatchObject({ points: 0, tier: null })
    expect(body.meta.upstreams.orders.status, describeResponse(response)).toBe('ok')
  })

  it('reports the upstream status code of a failed optional call', async () => {
    await upstreams.mocks.inventory.set({ mode: 'error' })
    const response = await aggregate('user-9')
    expectStatus(response, 200)
    const body = response.json()
    expect(body.meta.upstreams.inventory).toMatchObject({ status: 'error', httpStatus: 500, fallback: 'default' })
    // Without stock levels nothing is dropped as out of stock, and the response says stock is unknown.
    expect(body.recommendations.filter((item: { available: number | null }) => item.available !== null), 'recommendations with a stock level').toEqual([])
  })

  it('serves the last good value after an upstream starts failing', async () => {
    const goodResponse = await aggregate('user-10')
    expectStatus(goodResponse, 200)
    expect(goodResponse.json().meta.complete, describeResponse(goodResponse)).toBe(true)
    const good = goodResponse.json()
    await upstreams.mocks.orders.set({ mode: 'error' })
    const response = await aggregate('user-10')
    expectStatus(response, 200)
    const body = response.json()
    expect(body.meta.upstreams.orders).toMatchObject({ status: 'error', fallback: 'stale' })
    expect(body.orders).toEqual(good.orders)
    expect(response.headers['x-aggregate-complete']).toBe('false')

    await upstreams.mocks.orders.set({ mode: 'malformed' })
    const afterMalformed = (await aggregate('user-10')).json()
    expect(afterMalformed.meta.upstreams.orders).toMatchObject({ status: 'malformed', fallback: 'stale' })
    expect(afterMalformed.orders).toEqual(good.orders)

    // Another user has no last good value: the static default it is.
    const other = (await aggregate('user-11')).json()
    expect(other.meta.upstreams.orders).toMatchObject({ status: 'malformed', fallback: 'default' })
    expect(other.orders.count).toBe(0)
  })

  it('caps each call at its own timeout even when the deadline leaves more', async () => {
    // Inventory's timeout is 200 ms, the deadline leaves 4.97 s: an answer after 1.5 s would be in time for the deadline.
    await upstreams.mocks.inventory.set({ latencyMs: 1500 })
    const response = await aggregate('user-12', {}, timedGateway)
    expectStatus(response, 200)
    const body = response.json()
    expect(body.meta.upstreams.inventory, describeResponse(response)).toMatchObject({ status: 'timeout', fallback: 'default' })
    expect(body.meta.upstreams.inventory.latencyMs).toBeGreaterThanOrEqual(SHORT_TIMEOUT_MS - 10)
    // Five times the timeout, and well before the upstream would have answered.
    expect(body.meta.upstreams.inventory.latencyMs).toBeLessThan(SHORT_TIMEOUT_MS * 5)
  })
})

describe('bad input', () => {
  const badIds = [
    ['an encoded slash', 'a%2Fb'],
    ['dots', '..'],
    ['an encoded dot-dot-slash', '..%2F..%2Fadmin'],
    ['unicode', encodeURIComponent('ünïcødé')],
    ['an emoji', encodeURIComponent('😀')],
    ['a space', 'a%20b'],
    ['a 10 kB id', 'x'.repeat(10_000)],
    ['a 65-character id', 'x'.repeat(65)],
    ['a percent sign', '%25'],
    ['a broken escape', '%E0%A4%A']
  ]

  it.each(badIds)('rejects %s with a JSON 400 and calls no upstream', async (_label, id) => {
    const response = await rawGet(gateway.origin, `/aggregate/${id}`)
    expectStatus(response, 400)
    expect(response.headers['content-type']).toMatch(/application\/json/)
    const body = JSON.parse(response.body)
    expect(body).toMatchObject({ statusCode: 400, error: 'Bad Request', requestId: expect.any(String) })
    expect(response.body).not.toMatch(/at .*\.(ts|js):\d+/)
    const stats = await upstreams.allStats()
    expect(UPSTREAM_NAMES.reduce((sum, name) => sum + stats[name].requests, 0)).toBe(0)
  })

  it('accepts the longest valid id', async () => {
    expectStatus(await aggregate('a'.repeat(64)), 200)
  })

  it('answers an unknown route with a JSON 404', async () => {
    const response = await gateway.inject({ method: 'GET', url: '/aggregate' })
    expectStatus(response, 404)
    expect(response.json()).toMatchObject({ statusCode: 404, code: 'AGG_ERR_ROUTE_NOT_FOUND' })
    const nested = await gateway.inject({ method: 'GET', url: '/aggregate/a/b' })
    expectStatus(nested, 404)
    expect(nested.json().code).toBe('AGG_ERR_ROUTE_NOT_FOUND')
  })

  it('answers other methods with a JSON 404', async () => {
    const response = await gateway.inject({ method: 'POST', url: '/aggregate/user-1', payload: { a: 1 } })
    expectStatus(response, 404)
    expect(response.json().code).toBe('AGG_ERR_ROUTE_NOT_FOUND')
  })
})
