import { EMBEDDING_DIMENSIONS, productEmbedding } from '../product-embedding.js'
import type { Candidate, Order, StockLevel } from './payloads.js'

export interface RankedRecommendation {
  productId: string
  title: string
  category: string
  price: number
  score: number
  /** Units in stock, or null when inventory was unavailable and stock could not be checked. */
  available: number | null
}

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

function dot (left: Float64Array, right: Float64Array): number {
  let sum = 0
  for (let index = 0; index < left.length; index++) sum += left[index]! * right[index]!
  return sum
}

function normalise (vector: Float64Array): Float64Array {
  const norm = Math.sqrt(dot(vector, vector))
  if (norm > 0) for (let index = 0; index < vector.length; index++) vector[index]! /= norm
  return vector
}

/**
 * The user's taste (a decayed, quantity-weighted mean of the embeddings of what they bought) and the embeddings of
 * their most recent distinct purchases.
 */
function purchaseProfile (orders: Order[]) {
  const taste = new Float64Array(EMBEDDING_DIMENSIONS)
  const anchors: Float64Array[] = []
  const purchased = new Set<string>()
  const newestFirst = orders.filter((order) => order.status !== 'cancelled').sort((left, right) => right.placedAt.localeCompare(left.placedAt))
  const embedding = new Float64Array(EMBEDDING_DIMENSIONS)
  let weight = 1
  for (const order of newestFirst) {
    for (const line of order.items) {
      productEmbedding(line.productId, embedding)
      for (let index = 0; index < taste.length; index++) taste[index]! += embedding[index]! * line.quantity * weight
      if (!purchased.has(line.productId)) {
        purchased.add(line.productId)
        if (anchors.length < MAX_ANCHORS) anchors.push(Float64Array.from(embedding))
      }
    }
    weight *= ORDER_DECAY
  }
  return { taste: normalise(taste), anchors, purchased, hasHistory: purchased.size > 0 }
}

/**
 * Scores every candidate against the user's purchase history, drops what they already own and what is out of stock,
 * and returns the top K after a diversity re-rank (maximal marginal relevance), best first, with how many it scored.
 */
export function rankRecommendations (input: RankingInput): { ranked: RankedRecommendation[], candidatesScored: number } {
  const { taste, anchors, purchased, hasHistory } = purchaseProfile(input.orders)
  const favourites = new Set(input.favouriteCategories)
  const scored: Array<{ candidate: Candidate, vector: Float64Array, score: number, available: number | null }> = []

  for (const candidate of input.candidates) {
    if (purchased.has(candidate.productId)) continue
    const stock = input.stock?.get(candidate.productId)
    if (input.stock !== null && (stock === undefined || stock.available <= 0)) continue

    const vector = new Float64Array(EMBEDDING_DIMENSIONS)
    for (let index = 0; index < EMBEDDING_DIMENSIONS; index++) vector[index] = candidate.features[index] ?? 0
    normalise(vector)

    let closestPurchase = 0
    for (const anchor of anchors) {
      const similarity = dot(vector, anchor)
      if (similarity > closestPurchase) closestPurchase = similarity
    }
    const score = (hasHistory ? WEIGHTS.taste * dot(vector, taste) + WEIGHTS.item * closestPurchase : 0) +
      WEIGHTS.category * (input.categoryShare.get(candidate.category) ?? 0) +
      WEIGHTS.favourite * (favourites.has(candidate.category) ? 1 : 0) +
      WEIGHTS.popularity * candidate.popularity
    scored.push({ candidate, vector, score, available: stock?.available ?? null })
  }

  scored.sort((left, right) => right.score - left.score)
  const pool = scored.slice(0, input.topK * DIVERSITY_DEPTH)
  const picked: typeof scored = []
  while (picked.length < input.topK && pool.length > 0) {
    let bestIndex = 0
    let bestValue = -Infinity
    for (let index = 0; index < pool.length; index++) {
      let redundancy = 0
      for (const chosen of picked) redundancy = Math.max(redundancy, dot(pool[index]!.vector, chosen.vector))
      const value = (1 - DIVERSITY_WEIGHT) * pool[index]!.score - DIVERSITY_WEIGHT * redundancy
      if (value > bestValue) {
        bestValue = value
        bestIndex = index
      }
    }
    picked.push(pool.splice(bestIndex, 1)[0]!)
  }

  const ranked = picked.map(({ candidate, score, available }) => ({
    productId: candidate.productId,
    title: candidate.title,
    category: candidate.category,
    price: candidate.price,
    score: Math.round(score * 10_000) / 10_000,
    available
  }))
  return { ranked, candidatesScored: scored.length }
}
