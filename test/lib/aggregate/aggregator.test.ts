import { describe, expect, it } from 'vitest'
import { BODY_GENERATORS } from '../../../mock-services/data.js'
import { UpstreamCallError } from '../../../src/errors.js'
import { createAggregator, type AggregateFailure, type BodyFetcher, type MergeRunner } from '../../../src/lib/aggregate/aggregator.js'
import { channels, type AggregateRequestMessage } from '../../../src/lib/contract/events.js'
import type { AggregateBody } from '../../../src/lib/contract/response.js'
import { registry } from '../../../src/lib/contract/upstreams.js'
import { createStaleCache } from '../../../src/lib/resilience/stale-cache.js'
import { merger } from '../../helpers/merge.js'

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

/** A fetcher that answers at once from the mocks' data: no sockets, so the test is about the aggregator alone. */
function fetcherFor (name: string): BodyFetcher {
  return {
    timeoutMs: 200,
    // Like the real client: a call with no budget left is a timeout without being made.
    fetchBody: async (userId, { budgetMs }) => {
      if (budgetMs <= 0) throw new UpstreamCallError(name, 'timeout', { reason: 'no time left before the deadline' })
      return encode(BODY_GENERATORS[name]!(userId, 1))
    }
  }
}

const failing = (name: string, status: 'error' | 'timeout', httpStatus?: number): BodyFetcher => ({
  timeoutMs: 200,
  fetchBody: async () => { throw new UpstreamCallError(name, status, { httpStatus }) }
})

const realMerge = async (input: Parameters<MergeRunner['run']>[0]) => merger.merge(input)

function aggregatorWith (merge: MergeRunner['run'], fetcherOverrides: Record<string, BodyFetcher> = {}) {
  return createAggregator({
    upstreams: registry.upstreams.map((declaration) => ({
      declaration,
      fallback: declaration.defaults.fallback,
      maxBodyElements: declaration.defaults.maxBodyElements,
      fetcher: fetcherOverrides[declaration.name] ?? fetcherFor(declaration.name)
    })),
    staleCache: createStaleCache({ maxEntries: 100, maxBytes: 10_000_000, ttlMs: 60_000 }),
    merge: { run: merge, runHere: (input) => merger.merge(input), refusal: () => null },
    deadlineMs: 500,
    mergeReserveMs: 30,
    topK: 10
  })
}

const request = (extra: { queuedMs?: number } = {}) => ({ signal: new AbortController().signal, requestId: 'test', ...extra })

async function failureOf (promise: Promise<AggregateBody>): Promise<AggregateFailure> {
  try {
    const body = await promise
    throw new Error(`expected the aggregate to fail, it answered ${JSON.stringify(body.meta)}`)
  } catch (error) {
    return error as AggregateFailure
  }
}

describe('the aggregator', () => {
  it('merges every upstream into a complete body and publishes the outcome on aggregator:request', async () => {
    const messages: AggregateRequestMessage[] = []
    const listener = (message: unknown) => { messages.push(message as AggregateRequestMessage) }
    channels.request.subscribe(listener)
    try {
      const body = await aggregatorWith(realMerge).aggregate('user-0', request())
      expect(body.meta.complete, JSON.stringify(body.meta)).toBe(true)
      expect(Object.keys(body)).toEqual(expect.arrayContaining(['profile', 'orders', 'recommendations', 'inventory', 'loyalty']))
      expect(messages).toHaveLength(1)
      expect(messages[0]).toMatchObject({ requestId: 'test', userId: 'user-0', statusCode: 200, complete: true })
    } finally {
      channels.request.unsubscribe(listener)
    }
  })

  it('throws the required upstream\'s failure as a coded client error, with what every upstream did', async () => {
    const notFound = await failureOf(aggregatorWith(realMerge, { profile: failing('profile', 'error', 404) }).aggregate('user-9', request()))
    expect(notFound).toMatchObject({ code: 'AGG_ERR_USER_NOT_FOUND', statusCode: 404 })
    expect(notFound.upstreams?.profile).toMatchObject({ status: 'error', httpStatus: 404 })
    const timedOut = await failureOf(aggregatorWith(realMerge, { profile: failing('profile', 'timeout') }).aggregate('user-9', request()))
    expect(timedOut).toMatchObject({ code: 'AGG_ERR_UPSTREAM_TIMEOUT', statusCode: 504 })
  })

  it('serves an optional upstream\'s last good value when it fails, and its default when there is none', async () => {
    // An orders upstream that fails after one good answer.
    const cache = createStaleCache({ maxEntries: 100, maxBytes: 10_000_000, ttlMs: 60_000 })
    let ordersUp = true
    const orders: BodyFetcher = { timeoutMs: 200, fetchBody: async (userId, options) => { if (!ordersUp) throw new UpstreamCallError('orders', 'error', { httpStatus: 500 }); return fetcherFor('orders').fetchBody(userId, options) } }
    const aggregator = createAggregator({
      upstreams: registry.upstreams.map((declaration) => ({ declaration, fallback: declaration.defaults.fallback, maxBodyElements: declaration.defaults.maxBodyElements, fetcher: declaration.name === 'orders' ? orders : fetcherFor(declaration.name) })),
      staleCache: cache,
      merge: { run: realMerge, runHere: (input) => merger.merge(input), refusal: () => null },
      deadlineMs: 500,
      mergeReserveMs: 30,
      topK: 10
    })
    const fresh = await aggregator.aggregate('user-8', request())
    ordersUp = false
    const stale = await aggregator.aggregate('user-8', request())
    expect(stale.meta.upstreams.orders).toMatchObject({ status: 'error', fallback: 'stale', httpStatus: 500 })
    expect(stale.orders).toEqual(fresh.orders)
    const noHistory = await aggregator.aggregate('user-new', request())
    expect(noHistory.meta.upstreams.orders).toMatchObject({ status: 'error', fallback: 'default' })
    expect(noHistory.meta.complete).toBe(false)
  })

  it('answers at its deadline with the profile and defaults when the merge is still running', async () => {
    const body = await aggregatorWith(() => new Promise(() => {})).aggregate('user-1', request())
    expect((body.profile as { id: string }).id).toBe('user-1')
    expect(body.meta.complete).toBe(false)
    for (const name of ['orders', 'recommendations', 'inventory', 'loyalty']) {
      expect(body.meta.upstreams[name], name).toMatchObject({ status: 'merge-failed', fallback: 'default' })
    }
  })

  it('answers with the profile and defaults at once when the merge thread dies', async () => {
    const body = await aggregatorWith(() => Promise.reject(Object.assign(new Error('Worker terminated due to reaching memory limit: JS heap out of memory'), { code: 'ERR_WORKER_OUT_OF_MEMORY' }))).aggregate('user-2', request())
    expect(body.meta.upstreams.recommendations).toMatchObject({ status: 'merge-failed', fallback: 'default' })
    expect(body.recommendations).toEqual([])
  })

  it('survives a merge that fails after the deadline has already answered the request', async () => {
    let failLater: (error: Error) => void = () => {}
    const body = await aggregatorWith(() => new Promise((_resolve, reject) => { failLater = reject })).aggregate('user-4', request())
    expect(body.meta.complete).toBe(false)
    // The loser of the race rejects now; an unhandled rejection would fail this test (and crash a server).
    failLater(new Error('merge queue timeout, after the fact'))
    await new Promise((resolve) => setTimeout(resolve, 20))
  })

  it('does not start a merge once the deadline has passed, and answers with what it has', async () => {
    let merges = 0
    // An upstream that ignores cancellation and answers after the 500 ms deadline.
    const late: BodyFetcher = { timeoutMs: 200, fetchBody: async (userId) => { await new Promise((resolve) => setTimeout(resolve, 1500)); return encode(BODY_GENERATORS.loyalty!(userId, 1)) } }
    const body = await aggregatorWith(() => { merges++; return Promise.reject(new Error('refused: no time left')) }, { loyalty: late }).aggregate('user-5', request())
    expect(merges).toBe(0)
    expect(body.meta.upstreams.orders).toMatchObject({ status: 'merge-failed', fallback: 'default' })
  })

  it('counts the time spent in the admission queue against the deadline', async () => {
    // No time left: every call is out of budget before it starts, so the required profile times out.
    const failure = await failureOf(aggregatorWith(realMerge).aggregate('user-3', request({ queuedMs: 500 })))
    expect(failure.message).toMatch(/did not answer in time/)
  })

  it('refuses before calling any upstream when the merge would be refused', async () => {
    let calls = 0
    const counting: BodyFetcher = { timeoutMs: 200, fetchBody: async () => { calls++; return new Uint8Array() } }
    const aggregator = createAggregator({
      upstreams: registry.upstreams.map((declaration) => ({ declaration, fallback: declaration.defaults.fallback, maxBodyElements: 1000, fetcher: counting })),
      staleCache: createStaleCache({ maxEntries: 0, maxBytes: 1024, ttlMs: 1 }),
      merge: { run: realMerge, runHere: (input) => merger.merge(input), refusal: () => Object.assign(new Error('full'), { code: 'AGG_ERR_MERGE_QUEUE_FULL', statusCode: 503 }) },
      deadlineMs: 500,
      mergeReserveMs: 30,
      topK: 10
    })
    const failure = await failureOf(aggregator.aggregate('user-1', request()))
    expect(failure.code).toBe('AGG_ERR_MERGE_QUEUE_FULL')
    expect(calls).toBe(0)
  })
})
