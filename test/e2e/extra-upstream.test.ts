import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMockService, type MockService } from '../../mock-services/mock-service.js'
import { upstreamVariable } from '../../src/lib/contract/upstreams.js'
import { buildGateway, type TestGateway } from '../helpers/build-gateway.js'
import { startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'
import { openApiValidator } from '../helpers/openapi.js'
import { generateReviews, registry } from '../fixtures/extra-upstream/registry.js'

// Adding an upstream is its declaration, its merge section and its mock data (test/fixtures/extra-upstream): the
// environment, client, merge thread, response schema, OpenAPI document, metrics and dashboard follow.

let upstreams: MockUpstreams
let reviews: MockService
let reviewsUrl: string
let gateway: TestGateway

beforeAll(async () => {
  upstreams = await startMockUpstreams()
  reviews = createMockService({ declaration: registry.upstreams.at(-1)!, generate: generateReviews })
  reviewsUrl = await reviews.listen(0)
  // Merges go to the worker pool, which loads the same registry by its module.
  gateway = await buildGateway({ ...upstreams.env, [upstreamVariable('reviews', 'URL')]: reviewsUrl, MERGE_INLINE_WHEN_ALONE_MAX_BYTES: '0', AGGREGATE_DEADLINE_MS: '2000', UPSTREAM_REVIEWS_TIMEOUT_MS: '1000' }, { registry })
})
afterAll(async () => {
  await gateway?.close()
  await reviews?.close()
  await upstreams?.close()
})

describe('a gateway with a sixth declared upstream', () => {
  it('calls it, merges its section on a worker thread and reports it, as the OpenAPI document says', async () => {
    const response = await gateway.inject({ url: '/aggregate/user-6' })
    const body = response.json()
    expect(response.statusCode, response.body.slice(0, 300)).toBe(200)
    expect(body.reviews).toEqual({ count: 3, averageStars: 4 })
    expect(body.meta.upstreams.reviews).toMatchObject({ status: 'ok', fallback: 'none' })
    expect(body.meta.complete).toBe(true)
    const stats = await (await fetch(`${reviewsUrl}/__stats`)).json() as { requests: number }
    expect(stats.requests).toBe(1)
    const validate = await openApiValidator((await gateway.inject({ url: '/documentation/json' })).json())
    expect(validate('/aggregate/{userId}', 'get', 200, body)).toEqual([])
    expect(validate('/aggregate/{userId}', 'get', 200, { ...body, reviews: { count: 'three' } })).not.toEqual([])
    expect(gateway.mergePool.stats().completed, 'merges run on a worker thread').toBeGreaterThan(1)
  })

  it('falls back to its declared default when it fails, and shows it in /metrics and on the dashboard', async () => {
    await fetch(`${reviewsUrl}/__control`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mode: 'error' }) })
    const body = (await gateway.inject({ url: '/aggregate/user-7' })).json()
    expect(body.reviews).toEqual({ count: 0, averageStars: null })
    expect(body.meta.upstreams.reviews).toMatchObject({ status: 'error', fallback: 'default', httpStatus: 500 })
    const metrics = (await gateway.inject({ url: '/metrics' })).body
    expect(metrics).toMatch(/^aggregate_bulkhead_concurrency_limit\{upstream="reviews"\} 20$/m)
    expect(metrics).toMatch(/^aggregate_fallbacks_total\{upstream="reviews",kind="default"\} 1$/m)
    const snapshot = (await gateway.inject({ url: '/dashboard/snapshot' })).json()
    expect(snapshot.upstreams.reviews).toMatchObject({ concurrency: 20, maxQueue: 50 })
  })

  it('reads its settings from UPSTREAM_REVIEWS_* like any other upstream', () => {
    expect(gateway.config.upstreams.reviews).toMatchObject({ timeoutMs: 1000, concurrency: 20, maxQueue: 50, fallback: 'stale-or-default' })
  })
})
