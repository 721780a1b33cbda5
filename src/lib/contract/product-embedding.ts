import { hashString } from './seeded-random.js'

/** Length of every product feature vector, in the recommendations payload and in the merge. */
export const EMBEDDING_DIMENSIONS = 32

// The step and output of mulberry32, as in seededRandom (src/lib/seeded-random.ts), but without a closure per product:
// the merge embeds every order line. A cache would rarely hit: purchases spread over tens of thousands of products.
const STEP = 0x6d2b79f5

function uniformAt (state: number): number {
  let value = Math.imul(state ^ (state >>> 15), state | 1)
  value ^= value + Math.imul(value ^ (value >>> 7), value | 61)
  return ((value ^ (value >>> 14)) >>> 0) / 4294967296
}

/**
 * A product's unit-length embedding, derived from its id by the hashing trick, so the recommendations service and the
 * merge agree on it without sharing a table. Writes into `target` when given, to keep the hot loop allocation-free.
 */
export function productEmbedding (productId: string, target = new Float64Array(EMBEDDING_DIMENSIONS)): Float64Array {
  let state = hashString(productId) >>> 0
  let norm = 0
  for (let dimension = 0; dimension < target.length; dimension++) {
    const first = uniformAt(state = (state + STEP) >>> 0)
    const second = uniformAt(state = (state + STEP) >>> 0)
    const third = uniformAt(state = (state + STEP) >>> 0)
    // Sum of uniforms: cheap, roughly normal, centred on zero.
    const value = first + second + third - 1.5
    target[dimension] = value
    norm += value * value
  }
  norm = Math.sqrt(norm) || 1
  for (let dimension = 0; dimension < target.length; dimension++) target[dimension]! /= norm
  return target
}
