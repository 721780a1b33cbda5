import { connect } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { UPSTREAM_NAMES } from '../../src/lib/contract/upstreams.js'
import { buildGateway, upstreamTimeouts, type TestGateway } from '../helpers/build-gateway.js'
import { startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'
import { describeResponse, describeStatuses } from '../helpers/expect-response.js'

let upstreams: MockUpstreams

beforeAll(async () => { upstreams = await startMockUpstreams() })
afterAll(async () => { await upstreams?.close() })
beforeEach(async () => { await upstreams.reset() })

/** Sends raw bytes and returns everything the server wrote back before closing or going quiet. */
function rawExchange (origin: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(origin)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(bytes))
    let received = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => { received += chunk })
    socket.setTimeout(2000, () => socket.destroy())
    socket.on('close', () => resolve(received))
    socket.on('error', reject)
  })
}

const jsonBody = (response: string) => JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>

// One gateway for the file: the protocol errors are answered before admission or any upstream is involved. Calls
// and deadline are roomy, so only admission decides who gets a 503.
let gateway: TestGateway
beforeAll(async () => {
  gateway = await buildGateway({ ...upstreams.env, ADMISSION_INITIAL_LIMIT: '10', ADMISSION_MIN_LIMIT: '10', ADMISSION_MAX_LIMIT: '10', ADMISSION_MAX_QUEUE: '20', AGGREGATE_DEADLINE_MS: '20000', ...upstreamTimeouts(15000) }, { listen: true })
})
afterAll(async () => { await gateway?.close() })

describe('admission of a burst', () => {
  it('turns the excess away at once with a cheap 503, and every fan-out it starts ends in a 200', async () => {
    // Upstreams slow enough that the ten admitted requests hold their slots while the rest arrive, however slowly a
    // busy machine sends them: the queued ones wait out their 100 ms and the rest find the queue full.
    for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 1000 })
    const responses = await Promise.all(Array.from({ length: 100 }, async (_, index) => {
      const response = await fetch(`${gateway.origin}/aggregate/user-${index}`, { headers: { 'x-request-id': `burst-${index}` } })
      return { status: response.status, headers: response.headers, body: await response.json() as Record<string, unknown> }
    }))
    const ok = responses.filter((response) => response.status === 200)
    const shed = responses.filter((response) => response.status === 503)
    expect(ok.length + shed.length, `statuses: ${describeStatuses(responses)}`).toBe(100)
    expect(shed.length, `a limit of 10 and a queue of 20 cannot take 100 at once; statuses: ${describeStatuses(responses)}`).toBeGreaterThan(0)
    expect(ok.length, `statuses: ${describeStatuses(responses)}`).toBeGreaterThanOrEqual(10)
    // The documented error shape, written before Fastify saw the request.
    expect(shed[0]!.body, describeResponse(shed[0]!)).toMatchObject({ statusCode: 503, code: 'AGG_ERR_OVERLOADED', error: 'Service Unavailable' })
    expect(shed[0]!.body.requestId).toBe(shed[0]!.headers.get('x-request-id'))
    expect(String(shed[0]!.body.requestId)).toMatch(/^burst-\d+$/)
    expect(shed[0]!.headers.get('retry-after')).toBe('2')
    // What was turned away never reached an upstream: the profile mock saw exactly the fan-outs that answered 200.
    expect((await upstreams.mocks.profile.stats()).requests).toBe(ok.length)
    const metrics = await (await fetch(`${gateway.origin}/metrics`)).text()
    expect(metrics).toMatch(/aggregate_load_shed_total\{reason="admission_queue_(full|timeout)"\} [1-9]/)
    expect(metrics).toMatch(/^aggregate_admission_limit 10$/m)
  })
})

describe('protocol-level errors', () => {
  it('answers a request without Host with the documented JSON error', async () => {
    const response = await rawExchange(gateway.origin, 'GET /aggregate/user-1 HTTP/1.1\r\n\r\n')
    expect(response, 'the raw response').toMatch(/^HTTP\/1\.1 400 /)
    expect(jsonBody(response)).toMatchObject({ statusCode: 400, code: 'AGG_ERR_BAD_REQUEST', message: 'The Host header is required' })
    expect((await upstreams.mocks.profile.stats()).requests).toBe(0)
  })

  it('answers headers over the size limit with 431 and garbage with 400, both as JSON', async () => {
    const huge = await rawExchange(gateway.origin, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
    expect(huge).toMatch(/^HTTP\/1\.1 431 /)
    expect(jsonBody(huge)).toMatchObject({ statusCode: 431, code: 'AGG_ERR_HEADERS_TOO_LARGE' })
    const garbage = await rawExchange(gateway.origin, 'NOT HTTP AT ALL\r\n\r\n')
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /)
    expect(jsonBody(garbage)).toMatchObject({ statusCode: 400, code: 'AGG_ERR_BAD_REQUEST' })
    expect(typeof jsonBody(garbage).requestId).toBe('string')
  })
})
