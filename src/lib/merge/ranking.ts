import { EMBEDDING_DIMENSIONS, productEmbedding } from '../contract/product-embedding.js'
import type { Candidate, Order, StockLevel } from '../contract/payloads.js'
import type { RankedRecommendation } from '../contract/sections.js'

export interface RankingInput {
  candidates: Candidate[]
  /** Order history, newest or oldest first; empty when unknown. */
  orders: Order[]
  /** Stock by product, or null when unknown: then nothing is dropped for being out of stock. */
  stock: Map<string, StockLevel> | null
  /** Share of spend per category, 0..1. */
  categoryShare: Map<string, number>
  favouriteCategories: string[]
  topK: number
}

// Most recent distinct purchases compared one by one with every candidate (item-to-item similarity).
const MAX_ANCHORS = 256
// Each older order counts this much less in the taste vector.
const ORDER_DECAY = 0.97
// Diversity re-ranking looks this many times deeper than top-K, and trades this much relevance for novelty.
const DIVERSITY_DEPTH = 5
const DIVERSITY_WEIGHT = 0.25
const WEIGHTS = { taste: 0.4, item: 0.3, category: 0.15, favourite: 0.05, popularity: 0.1 }
// Up to this pool size the top of the scores is kept by insertion into a sorted window (about pool × candidates work at
// worst); beyond it a full sort is cheaper.
const MAX_INSERTION_POOL = 128
// Slack on the bound of a candidate's similarity to past purchases: covers rounding in the norms and in the dot product,
// and vectors too small to normalise exactly.
const RELATIVE_SLACK = 1e-9
const ABSOLUTE_SLACK = 1e-140

const DIMENSIONS = EMBEDDING_DIMENSIONS

// Every vector of one call lives in a few flat arrays, reused from call to call (the merge is synchronous, one per
// thread at a time), so scoring allocates nothing per candidate. They only grow.
let vectors = new Float64Array(256 * DIMENSIONS)
let scores = new Float64Array(256)
let closest = new Float64Array(256)
let upperBounds = new Float64Array(256)
let tasteSimilarities = new Float64Array(256)
let shares = new Float64Array(256)
let favouriteFlags = new Float64Array(256)
let candidateIndices = new Int32Array(256)
let workList = new Int32Array(256)
let included = new Uint8Array(256)
const anchors = new Float64Array(MAX_ANCHORS * DIMENSIONS)
const taste = new Float64Array(DIMENSIONS)
const scratchEmbedding = new Float64Array(DIMENSIONS)
let poolOrder = new Int32Array(MAX_INSERTION_POOL)
let redundancy = new Float64Array(MAX_INSERTION_POOL)
let pickedFlags = new Uint8Array(MAX_INSERTION_POOL)

function ensureCandidateCapacity (count: number): void {
  if (scores.length >= count) return
  const capacity = Math.max(count, scores.length * 2)
  vectors = new Float64Array(capacity * DIMENSIONS)
  scores = new Float64Array(capacity)
  closest = new Float64Array(capacity)
  upperBounds = new Float64Array(capacity)
  tasteSimilarities = new Float64Array(capacity)
  shares = new Float64Array(capacity)
  favouriteFlags = new Float64Array(capacity)
  candidateIndices = new Int32Array(capacity)
  workList = new Int32Array(capacity)
  included = new Uint8Array(capacity)
}

function ensurePoolCapacity (count: number): void {
  if (poolOrder.length >= count) return
  poolOrder = new Int32Array(count)
  redundancy = new Float64Array(count)
  pickedFlags = new Uint8Array(count)
}

/**
 * Dot product of two vectors stored at offsets of flat arrays. Summed strictly left to right, as the reference does, so
 * every score is bit-for-bit the same.
 */
function dotAt (left: Float64Array, leftOffset: number, right: Float64Array, rightOffset: number): number {
  let sum = 0
  for (let index = 0; index < DIMENSIONS; index++) sum += left[leftOffset + index]! * right[rightOffset + index]!
  return sum
}

/** Scales the vector at `offset` to unit length in place (a zero vector stays zero). */
function normaliseAt (vector: Float64Array, offset: number): void {
  const norm = Math.sqrt(dotAt(vector, offset, vector, offset))
  if (norm > 0) for (let index = 0; index < DIMENSIONS; index++) vector[offset + index]! /= norm
}

/**
 * Writes into `closest` the largest similarity (at least 0) of each vector listed in the first `length` entries of
 * `workList` to any of the first `anchorCount` anchors.
 * Two vectors against four anchors at a time: eight independent sums keep the CPU busy and each anchor load serves two
 * vectors, while every sum still runs left to right as the reference does, so each value is exact.
 */
function closestAnchors (length: number, anchorCount: number): void {
  let entry = 0
  for (; entry + 2 <= length; entry += 2) {
    const firstVector = workList[entry]!
    const secondVector = workList[entry + 1]!
    const first = firstVector * DIMENSIONS
    const second = secondVector * DIMENSIONS
    let closestFirst = 0
    let closestSecond = 0
    let anchor = 0
    for (; anchor + 4 <= anchorCount; anchor += 4) {
      const anchor0 = anchor * DIMENSIONS
      const anchor1 = anchor0 + DIMENSIONS
      const anchor2 = anchor1 + DIMENSIONS
      const anchor3 = anchor2 + DIMENSIONS
      let first0 = 0
      let first1 = 0
      let first2 = 0
      let first3 = 0
      let second0 = 0
      let second1 = 0
      let second2 = 0
      let second3 = 0
      for (let index = 0; index < DIMENSIONS; index++) {
        const left = vectors[first + index]!
        const right = vectors[second + index]!
        const value0 = anchors[anchor0 + index]!
        const value1 = anchors[anchor1 + index]!
        const value2 = anchors[anchor2 + index]!
        const value3 = anchors[anchor3 + index]!
        first0 += left * value0
        first1 += left * value1
        first2 += left * value2
        first3 += left * value3
        second0 += right * value0
        second1 += right * value1
        second2 += right * value2
        second3 += right * value3
      }
      // Strictly greater, as the reference: a NaN similarity never wins.
      if (first0 > closestFirst) closestFirst = first0
      if (first1 > closestFirst) closestFirst = first1
      if (first2 > closestFirst) closestFirst = first2
      if (first3 > closestFirst) closestFirst = first3
      if (second0 > closestSecond) closestSecond = second0
      if (second1 > closestSecond) closestSecond = second1
      if (second2 > closestSecond) closestSecond = second2
      if (second3 > closestSecond) closestSecond = second3
    }
    for (; anchor < anchorCount; anchor++) {
      const similarityFirst = dotAt(vectors, first, anchors, anchor * DIMENSIONS)
      const similaritySecond = dotAt(vectors, second, anchors, anchor * DIMENSIONS)
      if (similarityFirst > closestFirst) closestFirst = similarityFirst
      if (similaritySecond > closestSecond) closestSecond = similaritySecond
    }
    closest[firstVector] = closestFirst
    closest[secondVector] = closestSecond
  }
  if (entry < length) {
    const lastVector = workList[entry]!
    let closestLast = 0
    for (let anchor = 0; anchor < anchorCount; anchor++) {
      const similarity = dotAt(vectors, lastVector * DIMENSIONS, anchors, anchor * DIMENSIONS)
      if (similarity > closestLast) closestLast = similarity
    }
    closest[lastVector] = closestLast
  }
}

/**
 * Fills `taste` with the user's taste (a decayed, quantity-weighted mean of the embeddings of what they bought, unit
 * length) and `anchors` with the embeddings of their most recent distinct purchases; returns what they bought and how
 * many anchors there are.
 */
function purchaseProfile (orders: Order[]): { purchased: Set<string>, anchorCount: number } {
  taste.fill(0)
  const purchased = new Set<string>()
  let anchorCount = 0
  const newestFirst = orders.filter((order) => order.status !== 'cancelled').sort((left, right) => right.placedAt.localeCompare(left.placedAt))
  let weight = 1
  for (const order of newestFirst) {
    for (const line of order.items) {
      const embedding = productEmbedding(line.productId, scratchEmbedding)
      const quantity = line.quantity
      for (let index = 0; index < DIMENSIONS; index++) taste[index]! += embedding[index]! * quantity * weight
      if (!purchased.has(line.productId)) {
        purchased.add(line.productId)
        if (anchorCount < MAX_ANCHORS) {
          const offset = anchorCount * DIMENSIONS
          for (let index = 0; index < DIMENSIONS; index++) anchors[offset + index] = embedding[index]!
          anchorCount++
        }
      }
    }
    weight *= ORDER_DECAY
  }
  normaliseAt(taste, 0)
  return { purchased, anchorCount }
}

/** Where `Array.prototype.slice(0, end)` would stop on an array of `length` items. */
function sliceEnd (length: number, end: number): number {
  const relative = Number.isNaN(end) ? 0 : Math.trunc(end)
  return relative < 0 ? Math.max(length + relative, 0) : Math.min(relative, length)
}

/**
 * Puts into `poolOrder` the indices of the `poolSize` best `values`, best first, equal values in input order: the same
 * as the first `poolSize` of a stable sort by descending value, without sorting everything. With `onlyIncluded`, only
 * entries flagged in `included` compete (then there must be no NaN and at most {@link MAX_INSERTION_POOL} entries).
 */
function selectPool (values: Float64Array, count: number, poolSize: number, hasNaN: boolean, onlyIncluded: boolean): void {
  ensurePoolCapacity(poolSize)
  if (hasNaN || poolSize > MAX_INSERTION_POOL) {
    // NaN makes the comparator inconsistent; only the very same sort over the same comparisons reproduces the order.
    const order = Array.from({ length: count }, (_, index) => index)
    order.sort((left, right) => values[right]! - values[left]!)
    for (let index = 0; index < poolSize; index++) poolOrder[index] = order[index]!
    return
  }
  let filled = 0
  for (let candidate = 0; candidate < count; candidate++) {
    if (onlyIncluded && included[candidate] === 0) continue
    const score = values[candidate]!
    // An equal score comes later in input order, so it only enters a window that is not yet full.
    if (filled === poolSize && !(score > values[poolOrder[filled - 1]!]!)) continue
    let position = filled === poolSize ? filled - 1 : filled
    while (position > 0 && values[poolOrder[position - 1]!]! < score) {
      poolOrder[position] = poolOrder[position - 1]!
      position--
    }
    poolOrder[position] = candidate
    if (filled < poolSize) filled++
  }
}

/** The score of the scored candidate at `scored`, in the reference's order of operations so it is bit-for-bit equal. */
function scoreOf (hasHistory: boolean, scored: number, popularity: number, closestPurchase: number): number {
  return (hasHistory ? WEIGHTS.taste * tasteSimilarities[scored]! + WEIGHTS.item * closestPurchase : 0) +
    WEIGHTS.category * shares[scored]! +
    WEIGHTS.favourite * favouriteFlags[scored]! +
    WEIGHTS.popularity * popularity
}

/**
 * Scores every candidate against the user's purchase history, drops what they already own and what is out of stock,
 * and returns the top K after a diversity re-rank (maximal marginal relevance), best first, with how many it scored.
 */
export function rankRecommendations (input: RankingInput): { ranked: RankedRecommendation[], candidatesScored: number } {
  const { candidates, stock, categoryShare, topK } = input
  const { purchased, anchorCount } = purchaseProfile(input.orders)
  const hasHistory = purchased.size > 0
  const favourites = new Set(input.favouriteCategories)
  ensureCandidateCapacity(candidates.length)

  // First the unit vectors of the candidates that stay.
  let count = 0
  for (let candidateIndex = 0; candidateIndex < candidates.length; candidateIndex++) {
    const candidate = candidates[candidateIndex]!
    if (purchased.has(candidate.productId)) continue
    if (stock !== null) {
      const level = stock.get(candidate.productId)
      if (level === undefined || level.available <= 0) continue
    }
    const offset = count * DIMENSIONS
    const features = candidate.features
    for (let index = 0; index < DIMENSIONS; index++) vectors[offset + index] = features[index] ?? 0
    normaliseAt(vectors, offset)
    candidateIndices[count] = candidateIndex
    count++
  }
  // Every score term but the similarity to past purchases, which costs a dot product per past purchase.
  let hasNaN = false
  for (let scored = 0; scored < count; scored++) {
    const candidate = candidates[candidateIndices[scored]!]!
    tasteSimilarities[scored] = hasHistory ? dotAt(vectors, scored * DIMENSIONS, taste, 0) : 0
    shares[scored] = categoryShare.get(candidate.category) ?? 0
    favouriteFlags[scored] = favourites.has(candidate.category) ? 1 : 0
    const score = scoreOf(hasHistory, scored, candidate.popularity, 0)
    if (Number.isNaN(score)) hasNaN = true
    scores[scored] = score
  }

  const poolSize = sliceEnd(count, topK * DIVERSITY_DEPTH)
  if (hasHistory) {
    // Only the candidates that can still reach the re-rank pool need their similarity to past purchases. A score only
    // grows with that similarity, which is at most the norms' product: the exact scores of the candidates with the
    // best such upper bounds set a bar, and any candidate whose bound is below it cannot make the pool.
    const pruning = !hasNaN && poolSize > 0 && poolSize <= MAX_INSERTION_POOL && poolSize * 2 < count
    let length = 0
    if (pruning) {
      let anchorNorm = 0
      for (let anchor = 0; anchor < anchorCount; anchor++) anchorNorm = Math.max(anchorNorm, Math.sqrt(dotAt(anchors, anchor * DIMENSIONS, anchors, anchor * DIMENSIONS)))
      for (let scored = 0; scored < count; scored++) {
        const offset = scored * DIMENSIONS
        const bound = Math.sqrt(dotAt(vectors, offset, vectors, offset)) * anchorNorm * (1 + RELATIVE_SLACK) + ABSOLUTE_SLACK
        upperBounds[scored] = scoreOf(hasHistory, scored, candidates[candidateIndices[scored]!]!.popularity, bound)
        included[scored] = 0
      }
      selectPool(upperBounds, count, poolSize, false, false)
      for (let entry = 0; entry < poolSize; entry++) {
        workList[length++] = poolOrder[entry]!
        included[poolOrder[entry]!] = 1
      }
      closestAnchors(length, anchorCount)
      let bar = Infinity
      for (let entry = 0; entry < length; entry++) {
        const scored = workList[entry]!
        bar = Math.min(bar, scoreOf(hasHistory, scored, candidates[candidateIndices[scored]!]!.popularity, closest[scored]!))
      }
      length = 0
      for (let scored = 0; scored < count; scored++) {
        if (included[scored] === 1 || !(upperBounds[scored]! >= bar)) continue
        workList[length++] = scored
        included[scored] = 1
      }
    } else {
      for (let scored = 0; scored < count; scored++) workList[length++] = scored
    }
    closestAnchors(length, anchorCount)
    for (let scored = 0; scored < count; scored++) {
      if (pruning && included[scored] === 0) continue
      scores[scored] = scoreOf(hasHistory, scored, candidates[candidateIndices[scored]!]!.popularity, closest[scored]!)
    }
    selectPool(scores, count, poolSize, hasNaN, pruning)
  } else {
    selectPool(scores, count, poolSize, hasNaN, false)
  }

  // Maximal marginal relevance over the pool, kept incremental: each entry's redundancy (its largest similarity to
  // anything picked) only needs one dot product with the newest pick per round.
  redundancy.fill(0, 0, poolSize)
  pickedFlags.fill(0, 0, poolSize)
  const ranked: RankedRecommendation[] = []
  while (ranked.length < topK && ranked.length < poolSize) {
    let best = -1
    let bestValue = -Infinity
    for (let entry = 0; entry < poolSize; entry++) {
      if (pickedFlags[entry] === 1) continue
      // Nothing beats -Infinity when every value is NaN or -Infinity: then the first one left is picked.
      if (best === -1) best = entry
      const value = (1 - DIVERSITY_WEIGHT) * scores[poolOrder[entry]!]! - DIVERSITY_WEIGHT * redundancy[entry]!
      if (value > bestValue) {
        bestValue = value
        best = entry
      }
    }
    pickedFlags[best] = 1
    const pickedOffset = poolOrder[best]! * DIMENSIONS
    for (let entry = 0; entry < poolSize; entry++) {
      if (pickedFlags[entry] === 1) continue
      redundancy[entry] = Math.max(redundancy[entry]!, dotAt(vectors, poolOrder[entry]! * DIMENSIONS, vectors, pickedOffset))
    }

    const candidate = candidates[candidateIndices[poolOrder[best]!]!]!
    ranked.push({
      productId: candidate.productId,
      title: candidate.title,
      category: candidate.category,
      price: candidate.price,
      score: Math.round(scores[poolOrder[best]!]! * 10_000) / 10_000,
      available: stock === null ? null : stock.get(candidate.productId)!.available
    })
  }
  return { ranked, candidatesScored: count }
}
