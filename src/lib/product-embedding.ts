import { hashString, seededRandom } from './seeded-random.js'

/** Length of every product feature vector, in the recommendations payload and in the merge. */
export const EMBEDDING_DIMENSIONS = 32

/**
 * A product's unit-length embedding, derived from its id by the hashing trick, so the recommendations service and the
 * merge agree on it without sharing a table. Writes into `target` when given, to keep the hot loop allocation-free.
 */
export function productEmbedding (productId: string, target = new Float64Array(EMBEDDING_DIMENSIONS)): Float64Array {
  const random = seededRandom(hashString(productId))
  let norm = 0
  for (let dimension = 0; dimension < target.length; dimension++) {
    // Sum of uniforms: cheap, roughly normal, centred on zero.
    const value = random() + random() + random() - 1.5
    target[dimension] = value
    norm += value * value
  }
  norm = Math.sqrt(norm) || 1
  for (let dimension = 0; dimension < target.length; dimension++) target[dimension]! /= norm
  return target
}
