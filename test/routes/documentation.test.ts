import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { buildGateway, upstreamTimeouts, type TestGateway } from '../helpers/build-gateway.js'
import { startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'
import { openApiValidator } from '../helpers/openapi.js'

let upstreams: MockUpstreams
let gateway: TestGateway
let validate: Awaited<ReturnType<typeof openApiValidator>>

beforeAll(async () => {
  upstreams = await startMockUpstreams()
  gateway = await buildGateway({ ...upstreams.env, AGGREGATE_DEADLINE_MS: '2000', ...upstreamTimeouts(1000) })
  const response = await gateway.inject({ url: '/documentation/json' })
  expect(response.statusCode, response.body.slice(0, 300)).toBe(200)
  validate = await openApiValidator(response.json())
})
beforeEach(async () => { await upstreams.reset() })
afterAll(async () => {
  await gateway?.close()
  await upstreams?.close()
})

async function expectDocumented (url: string, statusCode: number) {
  const response = await gateway.inject({ url })
  expect(response.statusCode, `${url}: ${response.body.slice(0, 300)}`).toBe(statusCode)
  expect(validate('/aggregate/{userId}', 'get', response.statusCode, response.json()), `${url} ${response.body.slice(0, 300)}`).toEqual([])
  return response.json()
}

describe('the OpenAPI document', () => {
  it('is served at /documentation/json as valid OpenAPI, with Swagger UI at /documentation', async () => {
    const ui = await gateway.inject({ url: '/documentation/' })
    expect(ui.statusCode, ui.body.slice(0, 200)).toBe(200)
    expect(ui.headers['content-type']).toMatch(/text\/html/)
    // The validation has teeth: a body that breaks the contract is caught.
    expect(validate('/aggregate/{userId}', 'get', 200, { userId: 7, meta: {} })).not.toEqual([])
    expect(validate('/aggregate/{userId}', 'get', 503, { statusCode: 503 })).not.toEqual([])
  })

  it('describes a complete response', async () => {
    const body = await expectDocumented('/aggregate/user-1', 200)
    expect(body.meta.complete).toBe(true)
  })

  it('describes a partial response, with an omitted section and a default one', async () => {
    await upstreams.mocks.recommendations.set({ mode: 'error' })
    await upstreams.mocks.loyalty.set({ mode: 'malformed' })
    const body = await expectDocumented('/aggregate/user-2', 200)
    expect(body.meta.complete).toBe(false)
    expect(body.meta.upstreams.recommendations.status).toBe('error')
  })

  it('describes every error: a bad id, an unknown user, a failed and a timed-out required upstream', async () => {
    expect((await expectDocumented('/aggregate/bad%20id', 400)).code).toBe('AGG_ERR_BAD_REQUEST')
    expect((await expectDocumented('/aggregate/unknown-user', 404)).code).toBe('AGG_ERR_USER_NOT_FOUND')
    await upstreams.mocks.profile.set({ mode: 'error' })
    expect((await expectDocumented('/aggregate/user-3', 502)).code).toBe('AGG_ERR_UPSTREAM_FAILED')
    await upstreams.mocks.profile.set({ mode: 'hang' })
    expect((await expectDocumented('/aggregate/user-4', 504)).code).toBe('AGG_ERR_UPSTREAM_TIMEOUT')
  })
})
