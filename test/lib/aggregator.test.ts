import { beforeAll, describe, expect, it } from 'vitest'
import { BODY_GENERATORS } from '../../mock-services/data.js'
import { createAggregator, type BodyFetcher, type MergeRunner } from '../../src/lib/aggregator.js'
import { UpstreamCallError } from '../../src/lib/errors.js'
import { createStaleCache } from '../../src/lib/stale-cache.js'
import { UPSTREAM_NAMES, UPSTREAMS, type UpstreamName } from '../../src/lib/upstreams.js'
import { mergeSections } from '../../src/lib/merge/merge-sections.js'

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

// Long enough that in-memory fetchers always answer in time on a busy machine (a 150 ms deadline once timed out a
// fetcher still generating its first body): only the tests' merges and late fetchers run into it.
const DEADLINE_MS = 500

// Generated once per user: the fetchers hand out copies, so a call takes no time to speak of.
const generated = new Map<string, Uint8Array>()
function bodyOf (name: UpstreamName, userId: string): Uint8Array {
  const key = `${name}|${userId}`
  let body = generated.get(key)
  if (!body) generated.set(key, body = encode(BODY_GENERATORS[name](userId, 1)))
  return body.slice()
}
beforeAll(() => { for (const userId of ['user-1', 'user-2', 'user-3', 'user-4', 'user-5']) for (const name of UPSTREAM_NAMES) bodyOf(name, userId) })

/** Fetchers that answer at once from the mocks' data: no sockets, so the test is about the aggregator alone. */
const fetchers = Object.fromEntries(UPSTREAM_NAMES.map((name): [UpstreamName, BodyFetcher] => [name, {
  timeoutMs: DEADLINE_MS,
  // Like the real client: a call with no budget left is a timeout without being made.
  fetchBody: async (userId: string, { budgetMs }: { budgetMs: number }) => {
    if (budgetMs <= 0) throw new UpstreamCallError(name, 'timeout', { reason: 'no time left before the deadline' })
    return bodyOf(name, userId)
  }
}])) as Record<UpstreamName, BodyFetcher>

function aggregatorWith (merge: (input: Parameters<MergeRunner>[0], options: Parameters<MergeRunner>[1]) => ReturnType<MergeRunner>, fetcherOverrides: Partial<Record<UpstreamName, BodyFetcher>> = {}) {
  return createAggregator({
    fetchers: { ...fetchers, ...fetcherOverrides },
    fallbacks: { profile: 'omit', orders: 'stale-or-default', recommendations: 'stale-or-default', inventory: 'stale-or-default', loyalty: 'stale-or-default' },
    staleCache: createStaleCache({ maxEntries: 100, maxBytes: 10_000_000, ttlMs: 60_000 }),
    merge: Object.assign(merge, { refusal: () => null }),
    deadlineMs: DEADLINE_MS,
    mergeReserveMs: 30,
    topK: 10,
    maxBodyElements: Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, UPSTREAMS[name].defaultMaxBodyElements])) as Record<UpstreamName, number>
  })
}

describe('the aggregator', () => {
  it('answers at its deadline with the profile and defaults when the merge is still running', async () => {
    const aggregator = aggregatorWith(() => new Promise(() => {}))
    const startedAt = performance.now()
    const outcome = await aggregator.aggregate('user-1', { signal: new AbortController().signal, requestId: 'test' })
    const elapsed = performance.now() - startedAt
    if (!outcome.ok) throw new Error(`expected a 200 outcome, got ${outcome.error.message}`)
    expect(outcome.body.profile?.id).toBe('user-1')
    expect(outcome.body.meta.complete, JSON.stringify(outcome.upstreams)).toBe(false)
    for (const name of ['orders', 'recommendations', 'inventory', 'loyalty'] as const) {
      expect(outcome.upstreams[name], name).toMatchObject({ status: 'merge-failed', fallback: 'default' })
    }
    // The 500 ms deadline, not the merge that never ends; ten times the deadline for a busy machine.
    expect(elapsed).toBeLessThan(DEADLINE_MS * 10)
  })

  it('answers with the profile and defaults at once when the merge thread dies', async () => {
    const aggregator = aggregatorWith(() => Promise.reject(Object.assign(new Error('Worker terminated due to reaching memory limit: JS heap out of memory'), { code: 'ERR_WORKER_OUT_OF_MEMORY' })))
    const outcome = await aggregator.aggregate('user-2', { signal: new AbortController().signal, requestId: 'test' })
    if (!outcome.ok) throw new Error(`expected a 200 outcome, got ${outcome.error.message}`)
    expect(outcome.upstreams.recommendations).toMatchObject({ status: 'merge-failed', fallback: 'default' })
    expect(outcome.body.recommendations).toEqual([])
  })

  it('survives a merge that fails after the deadline has already answered the request', async () => {
    let failLater: (error: Error) => void = () => {}
    const aggregator = aggregatorWith(() => new Promise((_resolve, reject) => { failLater = reject }))
    const outcome = await aggregator.aggregate('user-4', { signal: new AbortController().signal, requestId: 'test' })
    expect(outcome.ok, outcome.ok ? '' : `failed: ${outcome.error.message}`).toBe(true)
    // The loser of the race rejects now; an unhandled rejection would fail this test (and crash a server).
    failLater(new Error('merge queue timeout, after the fact'))
    await new Promise((resolve) => setTimeout(resolve, 20))
  })

  it('does not start a merge once the deadline has passed, and answers with what it has', async () => {
    let merges = 0
    // An upstream that ignores cancellation and answers after the deadline.
    const late: BodyFetcher = { timeoutMs: DEADLINE_MS, fetchBody: async (userId) => { await new Promise((resolve) => setTimeout(resolve, DEADLINE_MS + 100)); return bodyOf('loyalty', userId) } }
    const aggregator = aggregatorWith(() => { merges++; return Promise.reject(new Error('refused: no time left')) }, { loyalty: late })
    const outcome = await aggregator.aggregate('user-5', { signal: new AbortController().signal, requestId: 'test' })
    if (!outcome.ok) throw new Error(`expected a 200 outcome, got ${outcome.error.message}`)
    expect(merges).toBe(0)
    expect(outcome.upstreams.orders).toMatchObject({ status: 'merge-failed', fallback: 'default' })
  })

  it('counts the time spent in the admission queue against the deadline', async () => {
    const aggregator = aggregatorWith(async (input) => mergeSections(input))
    const outcome = await aggregator.aggregate('user-3', { signal: new AbortController().signal, requestId: 'test', queuedMs: DEADLINE_MS })
    // No time left: every call is out of budget before it starts, so the required profile times out.
    expect(outcome.ok, outcome.ok ? `answered: ${JSON.stringify(outcome.upstreams)}` : '').toBe(false)
    if (!outcome.ok) expect(outcome.error.message).toMatch(/did not answer in time/)
  })
})
