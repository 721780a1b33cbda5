/**
 * A structural budget for JSON bodies, checked on the raw bytes before `JSON.parse`.
 *
 * A body within the byte limit can still be hostile: 8 MB of `[[],[],...]` is about 2.8 million arrays, which costs
 * seconds of parse and merge CPU and hundreds of megabytes of heap; 8 MB of `[[[[...` nests millions deep. Counting
 * nesting and values is one pass over the bytes with no allocation, so the check costs a fraction of a parse on a
 * normal body and stops at the first byte past the budget on a hostile one.
 */

export interface JsonBudget {
  /** The deepest nesting of arrays and objects allowed; the top-level container is depth 1. */
  maxDepth: number
  /** The most containers plus separators (`,`) allowed: about the number of values, keys not counted separately. */
  maxElements: number
}

/**
 * The nesting every upstream body is held to: at payload scale 10 the deepest (orders) is 5 deep, while a hostile
 * `[[[[…` nests millions deep. The element budgets are per upstream, in the registry (src/lib/contract/upstreams.ts).
 */
export const MAX_JSON_DEPTH = 16

// Limits are clamped to an int32: comparing the counters with a double (Infinity, 1e9) measured up to twice as slow.
// The loop compares with literal byte values, not module-level constants, which cost a context load each (measured
// about 1.5x slower): 0x22 " 0x5c \ 0x2c , 0x5b [ 0x5d ] 0x7b { 0x7d }
const LARGEST_LIMIT = 0x3fffffff

/**
 * Returns why `bytes` exceeds `budget` (a short reason naming the limit and the byte offset), or null if it does not.
 *
 * String contents are skipped, escaped quotes and backslashes included, so brackets and commas inside strings do not
 * count. The check does not validate JSON: a broken body that stays within the budget passes and is left to
 * `JSON.parse` to reject.
 */
export function exceedsJsonBudget (bytes: Uint8Array, budget: JsonBudget): string | null {
  const maxDepth = Math.min(budget.maxDepth, LARGEST_LIMIT) | 0
  const maxElements = Math.min(budget.maxElements, LARGEST_LIMIT) | 0
  const length = bytes.length
  let depth = 0
  let elements = 0
  // Which limit stopped the loop: the reason is built after it, so a first rejection, a path the JIT has not seen,
  // deoptimises nothing while the loop is still running.
  let exceeded: 'depth' | 'elements' | null = null
  let index = 0
  for (; index < length; index++) {
    const byte = bytes[index]!
    if (byte === 0x22) {
      // Skip to the closing quote; a backslash always escapes exactly the next byte.
      index++
      while (index < length) {
        const inner = bytes[index]!
        if (inner === 0x22) break
        index += inner === 0x5c ? 2 : 1
      }
    } else if (byte === 0x2c) {
      if (++elements > maxElements) { exceeded = 'elements'; break }
    } else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > maxDepth) { exceeded = 'depth'; break }
      if (++elements > maxElements) { exceeded = 'elements'; break }
    } else if (byte === 0x5d || byte === 0x7d) {
      depth--
    }
  }
  if (exceeded === null) return null
  return exceeded === 'depth' ? `nested deeper than ${maxDepth} (at byte ${index})` : `more than ${maxElements} elements (at byte ${index})`
}
