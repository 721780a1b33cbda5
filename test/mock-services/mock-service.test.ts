import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMockService, type MockService } from '../../mock-services/mock-service.js'
import { settingsFromEnvironment } from '../../mock-services/settings.js'

let mock: MockService
let url: string

beforeAll(async () => {
  mock = createMockService('orders', { latencyMs: 5, jitterMs: 0, failureRate: 0, payloadScale: 1, mode: 'normal' })
  url = await mock.listen(0)
})
afterAll(async () => { await mock?.close() })

const json = async (response: Response | Promise<Response>): Promise<any> => (await response).json()
const put = (body: unknown) => fetch(`${url}/__control`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

describe('a mock upstream', () => {
  it('serves deterministic data for its own resource only', async () => {
    const first = await json(fetch(`${url}/users/u-1/orders`))
    const second = await json(fetch(`${url}/users/u-1/orders`))
    expect(first).toEqual(second)
    expect(first.orders.length).toBeGreaterThan(0)
    expect((await fetch(`${url}/users/u-1/loyalty`)).status).toBe(404)
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
    expect((await fetch(`${url}/users/u-3/orders`)).status).toBe(500)

    const rejected = await put({ mode: 'explode', failureRate: 2, colour: 'red' })
    expect(rejected.status).toBe(400)
    expect((await json(rejected)).problems).toHaveLength(3)
    expect(await (await fetch(`${url}/__control`)).json()).toMatchObject({ latencyMs: 40, mode: 'error' })

    expect(await (await fetch(`${url}/__control`, { method: 'DELETE' })).json()).toMatchObject({ latencyMs: 5, mode: 'normal' })
  })

  it('counts requests, concurrency, completions and clients that went away', async () => {
    await fetch(`${url}/__stats`, { method: 'DELETE' })
    await put({ latencyMs: 100 })
    await Promise.all([1, 2, 3].map((n) => fetch(`${url}/users/u-${n}/orders`)))
    await put({ mode: 'hang' })
    const controller = new AbortController()
    const hung = fetch(`${url}/users/u-9/orders`, { signal: controller.signal }).catch(() => 'aborted')
    await new Promise((resolve) => setTimeout(resolve, 50))
    controller.abort()
    await hung
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(await (await fetch(`${url}/__stats`)).json()).toMatchObject({ requests: 4, inFlight: 0, maxInFlight: 3, completed: 3, aborted: 1 })
    await fetch(`${url}/__control`, { method: 'DELETE' })
  })

  it('sends broken JSON with a 200 in malformed mode', async () => {
    await put({ mode: 'malformed' })
    const response = await fetch(`${url}/users/u-4/orders`)
    expect(response.status).toBe(200)
    await expect(response.json()).rejects.toThrow()
    await fetch(`${url}/__control`, { method: 'DELETE' })
  })

  it('destroys the connection in reset mode', async () => {
    await put({ mode: 'reset' })
    await expect(fetch(`${url}/users/u-5/orders`)).rejects.toThrow()
    await fetch(`${url}/__control`, { method: 'DELETE' })
  })

  it('takes its defaults from MOCK_* variables and refuses bad ones', () => {
    expect(settingsFromEnvironment({ MOCK_LATENCY_MS: '25', MOCK_MODE: 'hang' })).toMatchObject({ latencyMs: 25, mode: 'hang', payloadScale: 1 })
    expect(() => settingsFromEnvironment({ MOCK_FAILURE_RATE: 'often' })).toThrow('failureRate must be a number from 0 to 1')
  })
})
