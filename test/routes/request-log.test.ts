import { Writable } from 'node:stream'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { buildGateway, upstreamTimeouts, type TestGateway } from '../helpers/build-gateway.js'
import { startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'

// One log line per request: the HTTP plugin writes it, with what the route (each upstream's outcome) and the error
// handler (the code sent) bound to the request's logger.

let upstreams: MockUpstreams
let gateway: TestGateway
let lines: Array<Record<string, any>> = []

beforeAll(async () => {
  upstreams = await startMockUpstreams()
  const stream = new Writable({ write (chunk, _encoding, done) { lines.push(JSON.parse(String(chunk))); done() } })
  gateway = await buildGateway({
    ...upstreams.env,
    LOG_LEVEL: 'info',
    AGGREGATE_DEADLINE_MS: '10000',
    ...upstreamTimeouts(5000)
  }, { logStream: stream })
})
beforeEach(async () => {
  await upstreams.reset()
  lines = []
})
afterAll(async () => {
  await gateway?.close()
  await upstreams?.close()
})

const requestLines = (url: string) => lines.filter((line) => line.msg === 'request' && line.url === url)

describe('the request log', () => {
  it('writes one line for a complete aggregate, with each upstream\'s latency', async () => {
    const response = await gateway.inject({ url: '/aggregate/user-1' })
    expect(response.statusCode, response.body.slice(0, 200)).toBe(200)
    const logged = requestLines('/aggregate/user-1')
    expect(logged, JSON.stringify(lines).slice(0, 500)).toHaveLength(1)
    expect(logged[0]).toMatchObject({ statusCode: 200, complete: true, requestId: response.headers['x-request-id'] })
    expect(Object.keys(logged[0]!.upstreamMs).sort()).toEqual(['inventory', 'loyalty', 'orders', 'profile', 'recommendations'])
  })

  it('writes each upstream\'s full report for a partial aggregate', async () => {
    await upstreams.mocks.orders.set({ mode: 'error' })
    await gateway.inject({ url: '/aggregate/user-2' })
    const [line] = requestLines('/aggregate/user-2')
    expect(line, JSON.stringify(lines).slice(0, 500)).toMatchObject({ statusCode: 200, complete: false, upstreams: { orders: { status: 'error', httpStatus: 500 } } })
  })

  it('writes the error code and the reports for a failed aggregate, and the code for a bad request', async () => {
    await upstreams.mocks.profile.set({ mode: 'error' })
    await gateway.inject({ url: '/aggregate/user-3' })
    expect(requestLines('/aggregate/user-3')[0], JSON.stringify(lines).slice(0, 500)).toMatchObject({ statusCode: 502, error: 'AGG_ERR_UPSTREAM_FAILED', complete: false, upstreams: { profile: { status: 'error' } } })
    await gateway.inject({ url: '/aggregate/bad%20id' })
    expect(requestLines('/aggregate/bad%20id')).toMatchObject([{ statusCode: 400, error: 'AGG_ERR_BAD_REQUEST' }])
  })
})
