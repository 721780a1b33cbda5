import { percentile } from '../percentile.js'

/**
 * The latest `size` latencies of one upstream, for the adaptive hedge delay (its p95) and the retry's idea of a
 * useful attempt (its p50). Percentiles come from a sorted copy made again once an eighth of the samples are new, so
 * reading them on every call costs a comparison, not a sort.
 */
export function createLatencyWindow (size = 256) {
  const samples = new Float64Array(size)
  let count = 0
  let next = 0
  let sinceSort = Number.POSITIVE_INFINITY
  let sorted = new Float64Array(0)

  return {
    record (ms: number) {
      samples[next] = ms
      next = (next + 1) % size
      if (count < size) count++
      sinceSort++
    },
    get count () { return count },
    /** The `fraction` percentile of the recent latencies, or null with fewer than `minimum` of them. */
    percentile (fraction: number, minimum = 1): number | null {
      if (count < minimum || count === 0) return null
      if (sinceSort >= Math.max(1, count / 8)) {
        sorted = samples.slice(0, count).sort()
        sinceSort = 0
      }
      return percentile(sorted, fraction)
    }
  }
}

export type LatencyWindow = ReturnType<typeof createLatencyWindow>
