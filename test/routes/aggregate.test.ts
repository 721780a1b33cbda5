import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { UPSTREAM_NAMES } from '../../src/lib/contract/upstreams.js'
import { buildGateway, rawGet, type TestGateway } from '../helpers/build-gateway.js'
import { eventually, startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'

let upstreams: MockUpstreams
let gateway: TestGateway

beforeAll(async () => {
  upstreams = await startMockUpstreams()
  gateway = await buildGateway({ ...upstreams.env, AGGREGATE_DEADLINE_MS: '300' }, { listen: true })
})

afterAll(async () => {
  await gateway?.close()
  await upstreams?.close()
})

beforeEach(async () => { await upstreams.reset() })

const aggregate = (userId: string, headers: Record<string, string> = {}) =>
  gateway.inject({ method: 'GET', url: `/aggregate/${userId}`, headers })

describe('GET /aggregate/:userId', () => {
  it('merges all five upstreams into one complete response', async () => {
    const response = await aggregate('user-42')
    expect(response.statusCode).toBe(200)
    expect(response.headers['x-aggregate-complete']).toBe('true')
    const body = response.json()
    expect(body.userId).toBe('user-42')
    expect(body.profile).toMatchObject({ id: 'user-42', region: expect.any(String) })
    expect(body.orders.count).toBeGreaterThan(0)
    expect(body.orders.spendByCategory.length).toBeGreaterThan(0)
    expect(body.recommendations).toHaveLength(10)
    expect(body.recommendations.every((item: { available: number }) => item.available > 0)).toBe(true)
    expect(body.inventory.trackedProducts).toBeGreaterThan(0)
    expect(body.loyalty).toMatchObject({ points: expect.any(Number), progress: expect.any(Number) })
    expect(body.meta.complete).toBe(true)
    for (const name of UPSTREAM_NAMES) expect(body.meta.upstreams[name]).toMatchObject({ status: 'ok', fallback: 'none' })
  })

  it('returns the same body for the same user (deterministic upstreams)', async () => {
    const first = (await aggregate('user-7')).json()
    const second = (await aggregate('user-7')).json()
    delete first.meta
    delete second.meta
    expect(second).toEqual(first)
  })

  it('has all five upstream calls in flight at the same moment', async () => {
    for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 150 })
    const pending = aggregate('user-1')
    await eventually(async () => {
      const stats = await upstreams.allStats()
      return UPSTREAM_NAMES.every((name) => stats[name].inFlight === 1)
    }, 2000, 'all five upstreams to be in flight together')
    expect((await pending).statusCode).toBe(200)
  })

  it('passes the request id and the remaining budget to every upstream', async () => {
    const response = await aggregate('user-2', { 'x-request-id': 'trace-abc-123' })
    expect(response.headers['x-request-id']).toBe('trace-abc-123')
    const stats = await upstreams.allStats()
    for (const name of UPSTREAM_NAMES) {
      expect(stats[name].lastRequestId).toBe('trace-abc-123')
      expect(stats[name].lastDeadlineMs).toBeGreaterThan(0)
      expect(stats[name].lastDeadlineMs).toBeLessThanOrEqual(200)
    }
  })

  it('replaces an unusable x-request-id with a generated one', async () => {
    const response = await aggregate('user-2', { 'x-request-id': 'bad id with spaces' })
    expect(response.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('answers a partial 200 within the deadline when an optional upstream hangs, and aborts that call', async () => {
    await upstreams.mocks.recommendations.set({ mode: 'hang' })
    const startedAt = performance.now()
    const response = await aggregate('user-3')
    const elapsed = performance.now() - startedAt
    expect(response.statusCode).toBe(200)
    expect(response.headers['x-aggregate-complete']).toBe('false')
    const body = response.json()
    expect(body.meta.complete).toBe(false)
    expect(body.meta.upstreams.recommendations).toMatchObject({ status: 'timeout', fallback: 'default' })
    expect(body.recommendations).toEqual([])
    expect(body.orders.count).toBeGreaterThan(0)
    expect(elapsed).toBeLessThan(300 * 3)
    await eventually(async () => (await upstreams.mocks.recommendations.stats()).aborted === 1, 3000, 'the hanging call to be aborted')
  })

  it('answers 504 within the deadline when the required profile upstream hangs', async () => {
    await upstreams.mocks.profile.set({ mode: 'hang' })
    const startedAt = performance.now()
    const response = await aggregate('user-4')
    expect(performance.now() - startedAt).toBeLessThan(300 * 3)
    expect(response.statusCode).toBe(504)
    expect(response.json()).toMatchObject({ statusCode: 504, code: 'AGG_ERR_UPSTREAM_TIMEOUT', requestId: expect.any(String) })
    await eventually(async () => (await upstreams.mocks.profile.stats()).aborted === 1, 3000, 'the profile call to be aborted')
  })

  it('answers 502 when the profile upstream fails, and 404 when it does not know the user', async () => {
    await upstreams.mocks.profile.set({ mode: 'error' })
    const failed = await aggregate('user-5')
    expect(failed.statusCode).toBe(502)
    expect(failed.json()).toMatchObject({ code: 'AGG_ERR_UPSTREAM_FAILED', message: 'The profile upstream failed' })
    expect(failed.body).not.toContain('simulated failure')

    await upstreams.mocks.profile.set({ mode: 'normal' })
    const missing = await aggregate('unknown-user')
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject({ code: 'AGG_ERR_USER_NOT_FOUND' })
  })

  it('stops waiting for the other upstreams once the required one has failed', async () => {
    await upstreams.mocks.profile.set({ mode: 'error' })
    await upstreams.mocks.orders.set({ mode: 'hang' })
    const startedAt = performance.now()
    const response = await aggregate('user-6')
    expect(response.statusCode).toBe(502)
    // The hanging orders call is cancelled at once instead of running into its 200 ms timeout.
    expect(performance.now() - startedAt).toBeLessThan(150)
    await eventually(async () => (await upstreams.mocks.orders.stats()).aborted === 1, 3000, 'the orders call to be aborted')
  })

  it.each([
    ['malformed JSON', { mode: 'malformed' as const }, 'malformed'],
    ['a 500', { mode: 'error' as const }, 'error'],
    ['a reset connection', { mode: 'reset' as const }, 'error'],
    ['a trickling body', { mode: 'slow-body' as const }, 'timeout']
  ])('falls back to a default when an optional upstream sends %s', async (_label, settings, status) => {
    await upstreams.mocks.loyalty.set(settings)
    const response = await aggregate('user-8')
    expect(response.statusCode).toBe(200)
    const body = response.json()
    expect(body.meta.upstreams.loyalty).toMatchObject({ status, fallback: 'default' })
    expect(body.loyalty).toMatchObject({ points: 0, tier: null })
    expect(body.meta.upstreams.orders.status).toBe('ok')
  })

  it('reports the upstream status code of a failed optional call', async () => {
    await upstreams.mocks.inventory.set({ mode: 'error' })
    const body = (await aggregate('user-9')).json()
    expect(body.meta.upstreams.inventory).toMatchObject({ status: 'error', httpStatus: 500, fallback: 'default' })
    // Without stock levels nothing is dropped as out of stock, and the response says stock is unknown.
    expect(body.recommendations.every((item: { available: number | null }) => item.available === null)).toBe(true)
  })

  it('serves the last good value after an upstream starts failing', async () => {
    const good = (await aggregate('user-10')).json()
    await upstreams.mocks.orders.set({ mode: 'error' })
    const response = await aggregate('user-10')
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
    await upstreams.mocks.orders.set({ latencyMs: 250 })
    const body = (await aggregate('user-12')).json()
    expect(body.meta.upstreams.orders.status).toBe('timeout')
    expect(body.meta.upstreams.orders.latencyMs).toBeGreaterThanOrEqual(190)
    expect(body.meta.upstreams.orders.latencyMs).toBeLessThan(290)
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
    expect(response.statusCode).toBe(400)
    expect(response.headers['content-type']).toMatch(/application\/json/)
    const body = JSON.parse(response.body)
    expect(body).toMatchObject({ statusCode: 400, error: 'Bad Request', requestId: expect.any(String) })
    expect(response.body).not.toMatch(/at .*\.(ts|js):\d+/)
    const stats = await upstreams.allStats()
    expect(UPSTREAM_NAMES.reduce((sum, name) => sum + stats[name].requests, 0)).toBe(0)
  })

  it('accepts the longest valid id', async () => {
    expect((await aggregate('a'.repeat(64))).statusCode).toBe(200)
  })

  it('answers an unknown route with a JSON 404', async () => {
    const response = await gateway.inject({ method: 'GET', url: '/aggregate' })
    expect(response.statusCode).toBe(404)
    expect(response.json()).toMatchObject({ statusCode: 404, code: 'AGG_ERR_ROUTE_NOT_FOUND' })
    const nested = await gateway.inject({ method: 'GET', url: '/aggregate/a/b' })
    expect(nested.statusCode).toBe(404)
    expect(nested.json().code).toBe('AGG_ERR_ROUTE_NOT_FOUND')
  })

  it('answers other methods with a JSON 404', async () => {
    const response = await gateway.inject({ method: 'POST', url: '/aggregate/user-1', payload: { a: 1 } })
    expect(response.statusCode).toBe(404)
    expect(response.json().code).toBe('AGG_ERR_ROUTE_NOT_FOUND')
  })
})
