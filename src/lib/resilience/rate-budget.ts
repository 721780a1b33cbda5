/**
 * A budget of extra calls (retries, hedges) as a share of recent calls, like Envoy's `retry_budget` and Finagle's
 * RetryBudget: over a sliding window of `windowMs` (kept in one-second buckets), extra calls may be at most
 * `ratio` × calls, plus `floor` so a quiet upstream can still retry now and then. When an upstream fails everything,
 * retries stay a fixed share of traffic instead of multiplying it.
 */

export interface RateBudgetOptions {
  ratio: number
  /** Extra calls allowed in any window whatever the traffic. */
  floor: number
  windowMs: number
  now?: () => number
}

const BUCKET_MS = 1000

export function createRateBudget ({ ratio, floor, windowMs, now = () => performance.now() }: RateBudgetOptions) {
  const buckets = Math.max(1, Math.ceil(windowMs / BUCKET_MS))
  const calls = new Float64Array(buckets)
  const extras = new Float64Array(buckets)
  let bucket = Math.floor(now() / BUCKET_MS)
  let callTotal = 0
  let extraTotal = 0
  let refused = 0

  /** Moves the window to the current second, emptying the buckets it passes. */
  function advance () {
    const current = Math.floor(now() / BUCKET_MS)
    const steps = Math.min(current - bucket, buckets)
    for (let step = 1; step <= steps; step++) {
      const index = (bucket + step) % buckets
      callTotal -= calls[index]!
      extraTotal -= extras[index]!
      calls[index] = 0
      extras[index] = 0
    }
    if (current > bucket) bucket = current
    return bucket % buckets
  }

  return {
    /** One call that could later want an extra one. */
    recordCall () {
      calls[advance()]!++
      callTotal++
    },
    /** Takes one extra call from the budget if there is room; false (and counted as refused) if not. */
    tryWithdraw (): boolean {
      const index = advance()
      if (extraTotal + 1 > floor + ratio * callTotal) {
        refused++
        return false
      }
      extras[index]!++
      extraTotal++
      return true
    },
    stats () {
      advance()
      return { calls: callTotal, extra: extraTotal, refused }
    }
  }
}

export type RateBudget = ReturnType<typeof createRateBudget>
