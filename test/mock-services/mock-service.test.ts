import { get } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loyaltyFor, recommendationsFor } from '../../mock-services/data.js'
import { createMockService, overflowingBody, type MockService } from '../../mock-services/mock-service.js'
import { settingsFromEnvironment } from '../../mock-services/settings.js'
import { eventually } from '../helpers/mock-upstreams.js'
import { expectStatus, fetchResponse, readResponse } from '../helpers/expect-response.js'

let mock: MockService
let url: string

beforeAll(async () => {
  mock = createMockService('orders', { latencyMs: 5, jitterMs: 0, tailRate: 0, tailLatencyMs: 0, failureRate: 0, failureStatus: 500, payloadScale: 1, hostileBytes: 64 * 1024, mode: 'normal', modeUserPrefix: '' })
  url = await mock.listen(0)
})
afterAll(async () => { await mock?.close() })

const json = async (response: Response | Promise<Response>): Promise<any> => (await response).json()
const stats = async () => json(fetch(`${url}/__stats`))
const put = (body: unknown) => fetch(`${url}/__control`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

describe('a mock upstream', () => {
  it('serves deterministic data for its own resource only', async () => {
    const first = await json(fetch(`${url}/users/u-1/orders`))
    const second = await json(fetch(`${url}/users/u-1/orders`))
    expect(first).toEqual(second)
    expect(first.orders.length).toBeGreaterThan(0)
    expectStatus(await fetchResponse(`${url}/users/u-1/loyalty`), 404)
  })

  it('scales list sizes with payloadScale', async () => {
    const small = await json(fetch(`${url}/users/u-2/orders`))
    await put({ payloadScale: 3 })
    const large = await json(fetch(`${url}/users/u-2/orders`))
    expect(large.orders.length).toBe(small.orders.length * 3)
    await fetch(`${url}/__control`, { method: 'DELETE' })
  })

  it('changes settings with PUT, validates them, and restores the defaults with DELETE', async () => {
    const changed = await put({ latencyMs: 40, mode: 'error' })
    expect(await changed.json()).toMatchObject({ latencyMs: 40, mode: 'error' })
    expectStatus(await fetchResponse(`${url}/users/u-3/orders`), 500)

    const rejected = await readResponse(await put({ mode: 'explode', failureRate: 2, colour: 'red' }))
    expectStatus(rejected, 400)
    expect(rejected.body.problems, rejected.text).toHaveLength(3)
    expect(await (await fetch(`${url}/__control`)).json()).toMatchObject({ latencyMs: 40, mode: 'error' })

    expect(await (await fetch(`${url}/__control`, { method: 'DELETE' })).json()).toMatchObject({ latencyMs: 5, mode: 'normal' })
  })

  it('applies the mode and failureRate only to users under modeUserPrefix, with the same latency for everyone', async () => {
    const changed = await put({ mode: 'error', modeUserPrefix: 'bad-', latencyMs: 30 })
    expect(await json(changed)).toMatchObject({ mode: 'error', modeUserPrefix: 'bad-', latencyMs: 30 })
    for (const user of ['bad-1', 'bad-', 'bad-xyz']) expectStatus(await fetchResponse(`${url}/users/${user}/orders`), 500, user)
    const startedAt = performance.now()
    const good = await fetchResponse(`${url}/users/good-1/orders`)
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(25)
    expectStatus(good, 200)
    expect(good.body.orders.length).toBeGreaterThan(0)
    // A prefix, not a substring, and case-sensitive.
    for (const user of ['good-bad-1', 'BAD-1', 'bad']) expectStatus(await fetchResponse(`${url}/users/${user}/orders`), 200, user)

    await put({ mode: 'normal', failureRate: 1 })
    expectStatus(await fetchResponse(`${url}/users/bad-2/orders`), 500)
    expectStatus(await fetchResponse(`${url}/users/good-2/orders`), 200)

    await put({ mode: 'hang', failureRate: 0 })
    expectStatus(await fetchResponse(`${url}/users/good-3/orders`), 200)
    await expect(fetch(`${url}/users/bad-3/orders`, { signal: AbortSignal.timeout(100) })).rejects.toThrow()

    // The empty prefix (the default) is every user again.
    await put({ mode: 'error', modeUserPrefix: '' })
    expectStatus(await fetchResponse(`${url}/users/good-4/orders`), 500)
    expect(await json(fetch(`${url}/__control`, { method: 'DELETE' }))).toMatchObject({ mode: 'normal', modeUserPrefix: '' })
  })

  it('refuses a modeUserPrefix that is not a short string of letters, digits, _ and -, and changes nothing', async () => {
    await put({ mode: 'error', modeUserPrefix: 'bad-' })
    for (const modeUserPrefix of ['bad/', 'bad prefix', 'ünï', 'x'.repeat(65), 7, null, ['bad-']]) {
      const rejected = await put({ mode: 'normal', modeUserPrefix })
      expectStatus(await readResponse(rejected.clone()), 400, JSON.stringify(modeUserPrefix))
      expect((await json(rejected)).problems).toEqual(['modeUserPrefix must be a string of at most 64 characters from A-Z, a-z, 0-9, _ and -'])
    }
    expect(await json(fetch(`${url}/__control`))).toMatchObject({ mode: 'error', modeUserPrefix: 'bad-' })
    expectStatus(await fetchResponse(`${url}/users/bad-1/orders`), 500)
    expectStatus(await fetchResponse(`${url}/users/good-1/orders`), 200)
    expect(await json(put({ modeUserPrefix: 'x'.repeat(64) }))).toMatchObject({ modeUserPrefix: 'x'.repeat(64) })
    await fetch(`${url}/__control`, { method: 'DELETE' })
  })

  it('counts requests, concurrency, completions and clients that went away', async () => {
    await fetch(`${url}/__stats`, { method: 'DELETE' })
    // Long enough for the three concurrent requests to overlap on a busy machine.
    await put({ latencyMs: 300 })
    await Promise.all([1, 2, 3].map((n) => fetch(`${url}/users/u-${n}/orders`)))
    await put({ mode: 'hang' })
    const controller = new AbortController()
    const hung = fetch(`${url}/users/u-9/orders`, { signal: controller.signal }).catch(() => 'aborted')
    await eventually(async () => (await stats()).inFlight === 1, 5000, 'the hanging request to arrive')
    controller.abort()
    await hung
    await eventually(async () => (await stats()).aborted === 1, 5000, 'the mock to see the client go away')
    expect(await stats()).toMatchObject({ requests: 4, inFlight: 0, maxInFlight: 3, completed: 3, aborted: 1 })
    await fetch(`${url}/__control`, { method: 'DELETE' })
  })

  it('sends broken JSON with a 200 in malformed mode', async () => {
    await put({ mode: 'malformed' })
    const response = await fetch(`${url}/users/u-4/orders`)
    expect(response.status, 'malformed mode').toBe(200)
    await expect(response.json()).rejects.toThrow()
    await fetch(`${url}/__control`, { method: 'DELETE' })
  })

  it('destroys the connection in reset mode', async () => {
    await put({ mode: 'reset' })
    await expect(fetch(`${url}/users/u-5/orders`)).rejects.toThrow()
    await fetch(`${url}/__control`, { method: 'DELETE' })
  })

  it('sends about hostileBytes of valid, deeply repetitive nested arrays in nested mode', async () => {
    await put({ mode: 'nested', hostileBytes: 30_000 })
    const response = await fetchResponse(`${url}/users/u-6/orders`)
    expectStatus(response, 200)
    expect(response.headers.get('content-type')).toBe('application/json')
    const { text } = response
    expect(text.length).toBeLessThanOrEqual(30_000)
    expect(text.length).toBeGreaterThan(29_900)
    const parsed = JSON.parse(text)
    expect(parsed.length).toBe(9999)
    expect(parsed.filter((item: unknown) => !(Array.isArray(item) && item.length === 0)), 'items that are not empty arrays').toEqual([])
    // The same body for every user: it is generated once.
    expect(await (await fetch(`${url}/users/u-7/orders`)).text()).toBe(text)
    await fetch(`${url}/__control`, { method: 'DELETE' })
  })

  it('bounds hostileBytes like every other setting', async () => {
    for (const hostileBytes of [1023, 64 * 1024 * 1024 + 1, '8MB']) {
      const rejected = await put({ hostileBytes })
      expectStatus(await readResponse(rejected.clone()), 400, `hostileBytes ${hostileBytes}`)
      expect((await json(rejected)).problems).toEqual(['hostileBytes must be a number from 1024 to 67108864'])
    }
  })

  it('keeps the shape but sends amounts that overflow in arithmetic in overflow mode', async () => {
    const normal = await json(fetch(`${url}/users/u-8/orders`))
    await put({ mode: 'overflow' })
    const response = await fetchResponse(`${url}/users/u-8/orders`)
    expectStatus(response, 200)
    expect(response.headers.get('content-type')).toBe('application/json')
    const hostile = response.body
    expect(hostile.orders).toHaveLength(normal.orders.length)
    expect(hostile.orders[0].id).toBe(normal.orders[0].id)
    for (const order of hostile.orders) {
      expect(order.total).toBe(1e308)
      for (const line of order.items) expect(line).toMatchObject({ unitPrice: 1e308, quantity: 10 })
    }
    expect(hostile.orders[0].items[0].unitPrice * hostile.orders[0].items[0].quantity).toBe(Infinity)
    await fetch(`${url}/__control`, { method: 'DELETE' })
  })

  it('overflows the amounts of every upstream that has some: no sum or product of them stays finite', () => {
    const loyalty = overflowingBody(loyaltyFor('u-1', 1)) as ReturnType<typeof loyaltyFor>
    expect(loyalty.points).toBe(1e308)
    expect(loyalty.tiers.every((tier) => tier.threshold === 1e308)).toBe(true)
    expect(Number.isFinite(loyalty.history.reduce((sum, event) => sum + event.delta, 0))).toBe(false)
    const recommendations = overflowingBody(recommendationsFor('u-1', 1)) as ReturnType<typeof recommendationsFor>
    const [first] = recommendations.candidates
    expect(first).toMatchObject({ price: 1e308, popularity: 1e308 })
    expect(first!.features.reduce((sum, value) => sum + value * value, 0)).toBe(Infinity)
    expect(typeof first!.title).toBe('string')
  })

  it('sends 10,000 response headers with a normal body in header-flood mode, and counts it as completed', async () => {
    await fetch(`${url}/__stats`, { method: 'DELETE' })
    await put({ mode: 'header-flood' })
    const { status, headers, body } = await new Promise<{ status: number | undefined, headers: Record<string, unknown>, body: string }>((resolve, reject) => {
      const request = get(`${url}/users/u-9/orders`, { maxHeaderSize: 1024 * 1024 }, (response) => {
        let text = ''
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => { text += chunk })
        response.on('end', () => resolve({ status: response.statusCode, headers: response.headers, body: text }))
      })
      // Node's client keeps only 2000 headers unless told otherwise.
      request.maxHeadersCount = 0
      request.on('error', reject)
    })
    expect(status, body.slice(0, 300)).toBe(200)
    expect(headers['content-type']).toBe('application/json')
    expect(Object.keys(headers).filter((name) => name.startsWith('x-flood-'))).toHaveLength(10_000)
    expect(JSON.parse(body).orders.length).toBeGreaterThan(0)
    await eventually(async () => (await stats()).completed === 1, 5000, 'the mock to count the response as completed')
    expect(await stats()).toMatchObject({ requests: 1, completed: 1, aborted: 0 })
    await fetch(`${url}/__control`, { method: 'DELETE' })
  })

  it('takes its defaults from MOCK_* variables and refuses bad ones', () => {
    expect(settingsFromEnvironment({ MOCK_LATENCY_MS: '25', MOCK_MODE: 'hang' })).toMatchObject({ latencyMs: 25, mode: 'hang', payloadScale: 1 })
    expect(settingsFromEnvironment({})).toMatchObject({ hostileBytes: 8 * 1024 * 1024 - 1024 })
    expect(settingsFromEnvironment({ MOCK_HOSTILE_BYTES: '4096', MOCK_MODE: 'nested' })).toMatchObject({ hostileBytes: 4096, mode: 'nested' })
    expect(() => settingsFromEnvironment({ MOCK_FAILURE_RATE: 'often' })).toThrow('failureRate must be a number from 0 to 1')
    expect(() => settingsFromEnvironment({ MOCK_HOSTILE_BYTES: '100' })).toThrow('hostileBytes must be a number from 1024 to 67108864')
    expect(settingsFromEnvironment({})).toMatchObject({ modeUserPrefix: '' })
    expect(settingsFromEnvironment({ MOCK_MODE: 'error', MOCK_MODE_USER_PREFIX: 'hostile-' })).toMatchObject({ mode: 'error', modeUserPrefix: 'hostile-' })
    expect(() => settingsFromEnvironment({ MOCK_MODE_USER_PREFIX: 'a b' })).toThrow('modeUserPrefix must be a string')
  })
})
