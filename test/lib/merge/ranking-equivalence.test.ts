import { afterAll, describe, expect, it } from 'vitest'
import { inventoryFor, loyaltyFor, ordersFor, profileFor, recommendationsFor } from '../../../mock-services/data.js'
import { parseJson, type MergeInput } from '../../../src/lib/merge/merge-sections.js'
import { loyaltyProgress } from '../../../src/lib/merge/sections/loyalty.js'
import { summariseOrders } from '../../../src/lib/merge/sections/orders.js'
import type { Candidate, InventoryPayload, LoyaltyPayload, Order, OrdersPayload, ProfilePayload, RecommendationsPayload } from '../../../src/lib/contract/payloads.js'
import { merger, validators } from '../../helpers/merge.js'
import { rankRecommendations, type RankingInput } from '../../../src/lib/merge/ranking.js'
import { EMBEDDING_DIMENSIONS, productEmbedding } from '../../../src/lib/contract/product-embedding.js'
import { UPSTREAM_NAMES, type BuiltInUpstream as UpstreamName } from '../../../src/lib/contract/upstreams.js'
import { loyaltyProgress as referenceLoyaltyProgress } from '../../fixtures/reference-loyalty-progress.js'
import { referenceMergeSections } from '../../fixtures/reference-merge-sections.js'
import { summariseOrders as referenceSummariseOrders } from '../../fixtures/reference-order-statistics.js'
import * as referenceReaders from '../../fixtures/reference-payloads.js'
import { productEmbedding as referenceProductEmbedding } from '../../fixtures/reference-product-embedding.js'
import { rankRecommendations as referenceRankRecommendations } from '../../fixtures/reference-ranking.js'
import { expectSame } from '../../helpers/expect-response.js'

// The flat-array ranking kernel, the readers and the summaries must give exactly what the code before them gave (the
// verbatim copies in test/fixtures): same products in the same order, same rounded scores, same stock, same counts.

// Enough users for every shape the generators make (order counts, categories, stock); the odd cases have tests of their own.
const USERS = 200
// The odd cases reshape users the first test ranks already, each case its own slice of them: their bodies are generated
// once, and each case still sees as many different users as before.
const usersFrom = (first: number, count: number) => Array.from({ length: count }, (_, index) => `user-${first + index}`)
const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))
/** The merge's reader: the body as parsed, if it validates against its upstream's payload schema. */
function reader<T> (name: UpstreamName) {
  return (json: unknown): T => {
    if (!validators[name].Check(json)) throw new Error(`${name} payload does not validate`)
    return json as T
  }
}
const readProfile = reader<ProfilePayload>('profile')
const readOrders = reader<OrdersPayload>('orders')
const readRecommendations = reader<RecommendationsPayload>('recommendations')
const readInventory = reader<InventoryPayload>('inventory')
const readLoyalty = reader<LoyaltyPayload>('loyalty')

/** Freezes a parsed body all the way down: a reader or ranking that wrote into its input would throw. */
function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner)
    Object.freeze(value)
  }
  return value
}

// The ranking, reader and merge tests read the same mock users: each user's bodies are generated, encoded and parsed
// once (parseJson, as the merge does), and the parsed bodies frozen so that no test can change what the next one reads.
interface MockBodies { encoded: Record<UpstreamName, Uint8Array>, json: Record<UpstreamName, unknown> }
const mockBodies = new Map<string, MockBodies>()
function mockBodiesFor (userId: string, scale: number): MockBodies {
  const key = `${userId}|${scale}`
  let bodies = mockBodies.get(key)
  if (!bodies) {
    const encoded = {
      profile: encode(profileFor(userId)),
      orders: encode(ordersFor(userId, scale)),
      recommendations: encode(recommendationsFor(userId, scale)),
      inventory: encode(inventoryFor(userId, scale)),
      loyalty: encode(loyaltyFor(userId, scale))
    }
    const json = Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, deepFreeze(parseJson(encoded[name]))])) as Record<UpstreamName, unknown>
    bodies = { encoded, json }
    mockBodies.set(key, bodies)
  }
  return bodies
}
afterAll(() => { mockBodies.clear() })

interface Bodies {
  orders: OrdersPayload
  candidates: Candidate[]
  inventory: InventoryPayload | null
  favouriteCategories: string[]
}

/** Through JSON and the readers, as the merge sees the bodies. */
function bodiesFor (userId: string, scale: number): Bodies {
  const { json } = mockBodiesFor(userId, scale)
  return {
    orders: readOrders(json.orders),
    candidates: readRecommendations(json.recommendations).candidates,
    inventory: readInventory(json.inventory),
    favouriteCategories: readProfile(json.profile).preferences.favouriteCategories
  }
}

/** The ranking input mergeSections builds from these bodies. */
function rankingInput (bodies: Bodies, topK = 10): RankingInput {
  return {
    candidates: bodies.candidates,
    orders: bodies.orders.orders,
    stock: bodies.inventory ? new Map(bodies.inventory.items.map((item) => [item.productId, item])) : null,
    categoryShare: new Map(summariseOrders(bodies.orders).spendByCategory.map(({ category, share }) => [category, share])),
    favouriteCategories: bodies.favouriteCategories,
    topK
  }
}

function expectSameRanking (input: RankingInput, what: string): void {
  const expected = referenceRankRecommendations(input)
  const actual = rankRecommendations(input)
  expectSame(actual, expected, `ranking differs for ${what}`)
}

function mergeInput (userId: string, scale: number, topK = 10): MergeInput {
  const { encoded } = mockBodiesFor(userId, scale)
  // Copies: the merge hands valid bodies back, and nothing of one test may reach another.
  const sections = Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, { fresh: encoded[name].slice(), otherwise: 'default' }]))
  // Every valid body handed back, as the reference merge always did.
  return { userId, topK, sections: sections as MergeInput['sections'], returnBodies: [...UPSTREAM_NAMES] }
}

describe('ranking kernel matches the reference ranking', () => {
  for (const scale of [1, 5]) {
    // Every user at scale 1, every fifth at scale 5: the same coverage of shapes in a fraction of the time.
    it(`ranks ${USERS / scale} mock users identically at payload scale ${scale}`, () => {
      for (let user = 0; user < USERS; user += scale) {
        const userId = `user-${user}`
        expectSameRanking(rankingInput(bodiesFor(userId, scale)), `${userId} at scale ${scale}`)
      }
    }, 240_000)
  }

  it('ranks identically with no order history, so only category, favourites and popularity count', () => {
    for (const userId of usersFrom(0, 50)) {
      const bodies = bodiesFor(userId, 1)
      expectSameRanking(rankingInput({ ...bodies, orders: { userId: 'x', orders: [] } }), `${userId} with no orders`)
    }
  })

  it('ranks identically when only cancelled orders exist', () => {
    for (const userId of usersFrom(50, 50)) {
      const bodies = bodiesFor(userId, 1)
      const orders = bodies.orders.orders.map((order): Order => ({ ...order, status: 'cancelled' }))
      expectSameRanking(rankingInput({ ...bodies, orders: { userId: 'x', orders } }), `${userId} with only cancelled orders`)
    }
  })

  it('keeps every candidate with stock null when inventory is unknown', () => {
    for (const userId of usersFrom(100, 50)) {
      const input = rankingInput({ ...bodiesFor(userId, 1), inventory: null })
      expectSameRanking(input, `${userId} with no inventory`)
      expect(rankRecommendations(input).ranked.filter((item) => item.available !== null), `ranked with a stock level for ${userId} with no inventory`).toEqual([])
    }
  })

  it('returns nothing and scores nothing for an empty candidate list', () => {
    const input = rankingInput({ ...bodiesFor('empty', 1), candidates: [] })
    expectSameRanking(input, 'empty candidates')
    expect(rankRecommendations(input)).toEqual({ ranked: [], candidatesScored: 0 })
  })

  it('ranks identically for every top K, including more than there are candidates and odd values', () => {
    const bodies = bodiesFor('top-k', 1)
    for (const topK of [0, 1, 2, 9, 10, 25, 26, 27, 40, 150, 500, 10_000, -1, -3, 2.5, Number.NaN, Infinity]) {
      expectSameRanking(rankingInput(bodies, topK), `top K ${topK}`)
    }
    const few = { ...bodiesFor('few', 1), inventory: null }
    few.candidates = few.candidates.slice(0, 7)
    for (const topK of [1, 3, 7, 10, 50]) expectSameRanking(rankingInput(few, topK), `7 candidates, top K ${topK}`)
  })

  it('breaks ties in input order when candidates score the same', () => {
    for (const userId of usersFrom(150, 20)) {
      const bodies = { ...bodiesFor(userId, 1), inventory: null }
      // Copies of a few candidates under new ids: identical vectors and scores, in several places of the list.
      const copies = bodies.candidates.slice(0, 30).flatMap((candidate, index) => [0, 1, 2].map((copy) => ({ ...candidate, productId: `${candidate.productId}-copy-${index}-${copy}` })))
      const candidates = [...copies.slice(0, 45), ...bodies.candidates, ...copies.slice(45)]
      for (const topK of [1, 10, 30]) expectSameRanking(rankingInput({ ...bodies, candidates }, topK), `${userId} with copied candidates, top K ${topK}`)
    }
    // Equal scores but different vectors (no history, one category, one popularity): which tied candidates make the
    // re-rank pool decides what diversity picks, so a wrong tie-break at the pool's edge shows.
    for (const userId of usersFrom(170, 20)) {
      const tied = bodiesFor(userId, 1).candidates.map((candidate) => ({ ...candidate, category: 'books', popularity: 0.5 }))
      for (const topK of [1, 2, 5, 10, 25]) {
        expectSameRanking({ candidates: tied, orders: [], stock: null, categoryShare: new Map(), favouriteCategories: [], topK }, `tied pool of ${userId}, top K ${topK}`)
      }
    }
    // Every candidate identical but its id, and no history: all scores tie.
    const same = bodiesFor('all-equal', 1).candidates[0]!
    const candidates = Array.from({ length: 300 }, (_, index) => ({ ...same, productId: `same-${index}` }))
    for (const topK of [1, 10, 100]) {
      expectSameRanking({ candidates, orders: [], stock: null, categoryShare: new Map(), favouriteCategories: [], topK }, `all equal, top K ${topK}`)
    }
  })

  it('ranks identically with odd feature vectors: short, long, all zero, huge', () => {
    const bodies = { ...bodiesFor('features', 1), inventory: null }
    const candidates = bodies.candidates.map((candidate, index) => {
      const variant = index % 5
      const features = variant === 0
        ? candidate.features.slice(0, 7)
        : variant === 1
          ? [...candidate.features, 3, -2]
          : variant === 2 ? candidate.features.map(() => 0) : variant === 3 ? candidate.features.map((value) => value * 1e200) : candidate.features
      return { ...candidate, features }
    })
    for (const topK of [10, 100]) expectSameRanking(rankingInput({ ...bodies, candidates }, topK), `odd features, top K ${topK}`)
  })

  it('ranks identically when arithmetic overflows to Infinity or NaN scores', () => {
    const bodies = bodiesFor('overflow', 1)
    // A huge quantity makes the taste vector NaN, hence every score NaN; a huge share makes some scores infinite.
    const orders = bodies.orders.orders.map((order, index) => index === 0 ? { ...order, items: order.items.map((line) => ({ ...line, quantity: 1e308 })) } : order)
    for (const topK of [1, 10, 40]) {
      expectSameRanking(rankingInput({ ...bodies, orders: { userId: 'x', orders } }, topK), `NaN scores, top K ${topK}`)
      const input = rankingInput(bodies, topK)
      const [first, second] = [...input.categoryShare.keys()]
      input.categoryShare.set(first!, Infinity)
      input.categoryShare.set(second!, -Infinity)
      expectSameRanking(input, `infinite scores, top K ${topK}`)
      input.categoryShare.set(second!, Number.NaN)
      expectSameRanking(input, `some NaN scores, top K ${topK}`)
    }
  })

  it('ranks identically with repeated candidate ids and repeated purchases', () => {
    const bodies = bodiesFor('repeats', 1)
    const candidates = [...bodies.candidates, ...bodies.candidates.slice(0, 50)]
    const orders = [...bodies.orders.orders, ...bodies.orders.orders.slice(0, 10)]
    expectSameRanking(rankingInput({ ...bodies, candidates, orders: { userId: 'x', orders } }), 'repeats')
  })

  it('keeps scoring right after a call with many more candidates than usual', () => {
    expectSameRanking(rankingInput(bodiesFor('large', 10)), 'large at scale 10')
    expectSameRanking(rankingInput(bodiesFor('small', 1)), 'small after large')
  })
})

describe('product embeddings match the reference', () => {
  it('gives the same vector for every product id, repeated or not', () => {
    const actual = new Float64Array(EMBEDDING_DIMENSIONS)
    const expected = new Float64Array(EMBEDDING_DIMENSIONS)
    // Compared element by element with Object.is (as toStrictEqual does): an expect per id would take seconds.
    const differing: string[] = []
    for (let round = 0; round < 2; round++) {
      for (let product = 0; product < 30_000; product += round === 0 ? 1 : 7) {
        const id = `p-${product}`
        productEmbedding(id, actual)
        referenceProductEmbedding(id, expected)
        if (actual.some((value, dimension) => !Object.is(value, expected[dimension]))) differing.push(id)
      }
    }
    expect(differing, `embeddings that differ from the reference (${differing.length})`).toEqual([])
    expect(productEmbedding('p-0', actual), 'embedding of p-0 into a reused array').toStrictEqual(referenceProductEmbedding('p-0', expected))
    expect(productEmbedding('', actual)).toStrictEqual(referenceProductEmbedding('', expected))
    expect(productEmbedding('p-1')).toStrictEqual(referenceProductEmbedding('p-1'))
  })
})

describe('readers and summaries match the reference', () => {
  it(`read and summarise ${USERS} mock users identically at payload scales 1 and 5`, () => {
    for (const scale of [1, 5]) {
      for (let user = 0; user < USERS; user += scale) {
        const userId = `user-${user}`
        const what = `${userId} at scale ${scale}`
        const bodies = mockBodiesFor(userId, scale).json
        expectSame(readProfile(bodies.profile), referenceReaders.readProfile(bodies.profile), `profile of ${what}`)
        expectSame(readOrders(bodies.orders), referenceReaders.readOrders(bodies.orders), `orders of ${what}`)
        expectSame(readRecommendations(bodies.recommendations), referenceReaders.readRecommendations(bodies.recommendations), `recommendations of ${what}`)
        expectSame(readInventory(bodies.inventory), referenceReaders.readInventory(bodies.inventory), `inventory of ${what}`)
        const loyalty = readLoyalty(bodies.loyalty)
        expectSame(loyalty, referenceReaders.readLoyalty(bodies.loyalty), `loyalty of ${what}`)
        const orders = readOrders(bodies.orders)
        expectSame(summariseOrders(orders), referenceSummariseOrders(orders), `order summary of ${what}`)
        expectSame(loyaltyProgress(loyalty), referenceLoyaltyProgress(loyalty), `loyalty summary of ${what}`)
      }
    }
  }, 240_000)

  it('rejects every malformed body the reference readers rejected; accepts the rest, except a non-boolean marketingOptIn', () => {
    // Scale 0.1: every list still has the two items the mutations visit (the same 1,454 mutants as at scale 1), and
    // each mutant carries a tenth of the unchanged rest through JSON.
    const valid = {
      profile: profileFor('malformed'),
      orders: ordersFor('malformed', 0.1),
      recommendations: recommendationsFor('malformed', 0.1),
      inventory: inventoryFor('malformed', 0.1),
      loyalty: loyaltyFor('malformed', 0.1)
    }
    const readers = { profile: readProfile, orders: readOrders, recommendations: readRecommendations, inventory: readInventory, loyalty: readLoyalty }
    const references = {
      profile: referenceReaders.readProfile,
      orders: referenceReaders.readOrders,
      recommendations: referenceReaders.readRecommendations,
      inventory: referenceReaders.readInventory,
      loyalty: referenceReaders.readLoyalty
    }
    const accepts = (read: (json: unknown) => unknown, json: unknown) => {
      try {
        read(json)
        return true
      } catch {
        return false
      }
    }
    // Every way to break one value: each leaf and container replaced by values of other types.
    const replacements: unknown[] = [null, undefined, 1, Number.NaN, Infinity, 'text', true, [], {}, [1], { 0: 1 }, -0, 0, 1e308]
    const MUTANTS_AT_SCALE_1: Record<string, number> = { profile: 202, orders: 501, recommendations: 301, inventory: 161, loyalty: 289 }
    for (const name of UPSTREAM_NAMES) {
      const mutants: unknown[] = [null, [], 'x', 1]
      const visit = (value: unknown, replace: (next: unknown) => unknown, depth: number) => {
        for (const replacement of replacements) mutants.push(replace(replacement))
        if (depth > 4 || typeof value !== 'object' || value === null) return
        const entries = Array.isArray(value) ? value.slice(0, 2).map((item, index) => [index, item] as const) : Object.entries(value)
        for (const [key, child] of entries) {
          visit(child, (next) => replace(Array.isArray(value) ? value.map((item, index) => index === key ? next : item) : { ...value, [key]: next }), depth + 1)
        }
        if (!Array.isArray(value)) mutants.push(replace({ ...value, extra: 'ignored' }))
      }
      visit(valid[name], (next) => next, 0)
      // The mutants a body at scale 1 gives: a smaller scale must not drop any (at 0.05 loyalty loses 57).
      expect(mutants.length, name).toBe(MUTANTS_AT_SCALE_1[name])
      for (const [index, mutant] of mutants.entries()) {
        const json = parseJson(encode(mutant === undefined ? null : mutant))
        const direct = mutant
        for (const body of [json, direct]) {
          const [actual, expected] = [accepts(readers[name], body), accepts(references[name], body)]
          // The reference read `marketingOptIn === true`, taking any value; the schema wants a boolean.
          const lenientField = name === 'profile' && typeof (body as { preferences?: { marketingOptIn?: unknown } })?.preferences?.marketingOptIn !== 'boolean'
          if (!lenientField) expect(actual, `${name} mutant ${index}: ${JSON.stringify(body)?.slice(0, 200)}`).toBe(expected)
          else expect(actual, `${name} mutant ${index}`).toBe(false)
        }
      }
    }
  })
})

describe('whole merge matches the reference merge', () => {
  it('merges mock users identically at payload scales 1 and 5, for several top K', () => {
    for (const scale of [1, 5]) {
      for (let user = 0; user < 60; user += scale) {
        const topK = [10, 3, 30][user % 3]!
        // The users the ranking and reader tests read (their bodies are generated already).
        const input = mergeInput(`user-${user}`, scale, topK)
        const { validFresh, ...actual } = merger.merge(input)
        const { validFresh: expectedFresh, ...reference } = referenceMergeSections(input)
        // `fresh` is `none` now: the same word as the response's `fallback`.
        const expected = { ...reference, sources: Object.fromEntries(Object.entries(reference.sources).map(([name, source]) => [name, source === 'fresh' ? 'none' : source])) }
        const what = `merge of user-${user} at scale ${scale}`
        expectSame(actual, expected, what)
        // The very same body buffers, compared by identity: an element-wise comparison of the bytes would be slow.
        expect(UPSTREAM_NAMES.map((name) => validFresh[name] === expectedFresh[name]), what).toStrictEqual(UPSTREAM_NAMES.map(() => true))
      }
    }
  }, 240_000)
})
