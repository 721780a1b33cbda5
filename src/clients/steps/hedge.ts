import type { LatencyWindow } from '../../lib/resilience/latency-window.js'
import type { RateBudget } from '../../lib/resilience/rate-budget.js'
import type { CallHandler, CallStep, UpstreamCall } from '../pipeline.js'

export interface HedgeOptions {
  /** The upstream's recent latencies: a hedge is sent once a call outlasts their p95. */
  latency: LatencyWindow
  budget: RateBudget
}

export interface HedgeStats {
  sent: number
  won: number
}

// Fewer recent latencies than this and the p95 means little: no hedging until then.
const MIN_SAMPLES = 20
const HEDGE_PERCENTILE = 0.95
// A tail of 5% or more is itself the p95, and hedging at it would never start: the delay is also capped at this many
// medians.
const MEDIAN_MULTIPLE = 3

const lost = () => new DOMException('another request for the same call answered first', 'AbortError')

/**
 * Hedging for the tail (resilience4j's adaptive hedge, on the p95): when the call is slower than the upstream's recent
 * p95 (at most three times its median), one more request is sent, within the hedge budget; the first good answer wins and the other request is aborted,
 * so the upstream sees it cancelled. If one request fails, the other may still answer; the call fails when both have.
 */
export function hedgeStep (options: HedgeOptions, stats: HedgeStats): CallStep {
  const { latency, budget } = options
  return (next) => (call) => {
    budget.recordCall()
    const p95 = latency.percentile(HEDGE_PERCENTILE, MIN_SAMPLES)
    if (p95 === null) return next(call)
    const delayMs = Math.min(p95, MEDIAN_MULTIPLE * latency.percentile(0.5)!)
    if (delayMs >= call.budgetMs) return next(call)
    return hedged(next, call, delayMs)
  }

  function hedged (next: CallHandler, call: UpstreamCall, delayMs: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const startedAt = performance.now()
      const legs: Array<{ controller: AbortController, startedAt: number, done: boolean }> = []
      let settled = false
      let failures = 0
      let firstError: unknown

      function launch (isHedge: boolean) {
        const leg = { controller: new AbortController(), startedAt: performance.now(), done: false }
        legs.push(leg)
        const signal = AbortSignal.any([call.signal, leg.controller.signal])
        next({ ...call, signal, budgetMs: call.budgetMs - (leg.startedAt - startedAt) }).then((body) => {
          leg.done = true
          if (settled) return
          settled = true
          clearTimeout(timer)
          if (legs.length > 1) {
            call.trace.hedge = isHedge ? 'won' : 'lost'
            if (isHedge) stats.won++
          }
          for (const other of legs) {
            if (other.done) continue
            // The loser is at least this slow: recorded, so aborting the slow ones does not drag the p95 down.
            latency.record(performance.now() - other.startedAt)
            other.controller.abort(lost())
          }
          resolve(body)
        }, (error: unknown) => {
          leg.done = true
          failures++
          firstError ??= error
          if (settled || failures < legs.length) return
          // Every request sent has failed; before the hedge is due, that is the primary alone.
          settled = true
          clearTimeout(timer)
          reject(firstError)
        })
      }

      const timer = setTimeout(() => {
        if (settled || call.signal.aborted || !budget.tryWithdraw()) return
        stats.sent++
        call.trace.hedge = 'lost'
        launch(true)
      }, delayMs)
      launch(false)
    })
  }
}
