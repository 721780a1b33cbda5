import { setTimeout as sleep } from 'node:timers/promises'
import { UpstreamCallError } from '../../errors.js'
import type { LatencyWindow } from '../../lib/resilience/latency-window.js'
import type { RateBudget } from '../../lib/resilience/rate-budget.js'
import type { CallHandler, CallStep, UpstreamCall } from '../pipeline.js'
import { toUpstreamCallError } from './classify-errors.js'

export interface RetryOptions {
  /** Tries after the first: 0 or 1. */
  retries: number
  /** 0: a try may use the whole call budget. */
  perTryTimeoutMs: number
  backoffMs: number
  budget: RateBudget
  /** The upstream's recent latencies: a retry is made only if a typical call (their median) still fits. */
  latency: LatencyWindow
  /** Assumed typical call before any latency is known. */
  typicalCallMs: number
}

export interface RetryStats {
  retries: number
  /** Retries not made: the budget was spent, or the deadline could not fit one. */
  skipped: { budget: number, deadline: number }
}

const perTryTimeout = (ms: number) => new DOMException(`try timed out after ${ms} ms`, 'TimeoutError')

/** One try, with its own timeout when that is shorter than what the call has left. */
async function tryOnce (next: CallHandler, call: UpstreamCall, budgetMs: number, perTryTimeoutMs: number): Promise<Uint8Array> {
  if (perTryTimeoutMs <= 0 || perTryTimeoutMs >= budgetMs) return next(budgetMs === call.budgetMs ? call : { ...call, budgetMs })
  // A plain timer, cleared when the try ends (see src/lib/resilience/deadline.ts on AbortSignal.timeout).
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(perTryTimeout(perTryTimeoutMs)), perTryTimeoutMs)
  try {
    return await next({ ...call, budgetMs: perTryTimeoutMs, signal: AbortSignal.any([call.signal, controller.signal]) })
  } finally {
    clearTimeout(timer)
  }
}

/**
 * At most one retry, and only when it is safe and worth it: the failure is one a GET may retry (no response byte
 * arrived, a 502/503/504, or the try's own timeout), the call's signal is still live, what is left of its budget after
 * a fully jittered backoff still fits a typical call, and the upstream's retry budget has room.
 */
export function retryStep (upstream: string, options: RetryOptions, stats: RetryStats): CallStep {
  const { backoffMs, budget, latency, typicalCallMs } = options
  return (next) => async (call) => {
    const startedAt = performance.now()
    const retries = call.retries ?? options.retries
    const perTryTimeoutMs = call.perTryTimeoutMs ?? options.perTryTimeoutMs
    budget.recordCall()
    try {
      return await tryOnce(next, call, call.budgetMs, perTryTimeoutMs)
    } catch (error) {
      const retriable = error instanceof UpstreamCallError && (error.retriable || error.status === 'timeout')
      if (retries === 0 || !retriable || call.signal.aborted) throw error
      const delayMs = Math.random() * backoffMs
      const leftMs = call.budgetMs - (performance.now() - startedAt) - delayMs
      if (leftMs < (latency.percentile(0.5, 10) ?? typicalCallMs)) {
        stats.skipped.deadline++
        throw error
      }
      if (!budget.tryWithdraw()) {
        stats.skipped.budget++
        throw error
      }
      stats.retries++
      try {
        await sleep(delayMs, undefined, { signal: call.signal })
      } catch (aborted) {
        throw toUpstreamCallError(upstream, aborted, call.signal)
      }
      return tryOnce(next, call, leftMs, perTryTimeoutMs)
    }
  }
}
