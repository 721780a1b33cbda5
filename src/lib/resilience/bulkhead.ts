import pLimit from 'p-limit'

/** Thrown when a call is refused without being run: the queue is full, or the wait would outlast the caller's budget. */
export class BulkheadRejectedError extends Error {
  readonly code = 'AGG_ERR_BULKHEAD_REJECTED'
  constructor (readonly reason: 'queue-full' | 'wait-exceeds-budget') {
    super(`bulkhead rejected the call: ${reason}`)
    this.name = 'BulkheadRejectedError'
  }
}

export interface BulkheadStats {
  active: number
  queued: number
  concurrency: number
  maxQueue: number
}

export interface Bulkhead {
  readonly active: number
  readonly queued: number
  stats (): BulkheadStats
  /** Why a call made now with `budgetMs` to spare would be refused, or null if it would be admitted. */
  refusal (budgetMs: number): BulkheadRejectedError['reason'] | null
  /**
   * Runs `task` when a slot is free. Rejects at once with {@link BulkheadRejectedError} when the queue is full or the
   * expected wait exceeds `budgetMs`; rejects with `signal.reason` if the signal aborts while the call is still queued.
   */
  run<T>(task: () => Promise<T>, options: { signal: AbortSignal, budgetMs: number }): Promise<T>
}

// Weight of the newest sample in the moving average of call durations.
const SMOOTHING = 0.2

/**
 * A concurrency limit with a bounded, cancellable wait queue, built on p-limit (which has neither a queue bound nor
 * cancellation). A queued call whose signal aborts leaves at once; the slot it would have taken is skipped in O(1).
 */
export function createBulkhead ({ concurrency, maxQueue }: { concurrency: number, maxQueue: number }): Bulkhead {
  const limit = pLimit(concurrency)
  let queued = 0
  let averageCallMs = 0

  // A waiting call starts when the calls ahead of it, spread over every slot, have finished.
  const expectedWaitMs = () => Math.ceil((queued + 1) / concurrency) * averageCallMs

  function refusal (budgetMs: number): BulkheadRejectedError['reason'] | null {
    if (limit.activeCount < concurrency) return null
    if (queued >= maxQueue) return 'queue-full'
    return expectedWaitMs() > budgetMs ? 'wait-exceeds-budget' : null
  }

  function run<T> (task: () => Promise<T>, { signal, budgetMs }: { signal: AbortSignal, budgetMs: number }): Promise<T> {
    if (signal.aborted) return Promise.reject(signal.reason)
    const mustWait = limit.activeCount >= concurrency
    const refused = refusal(budgetMs)
    if (refused) return Promise.reject(new BulkheadRejectedError(refused))

    return new Promise<T>((resolve, reject) => {
      // A call with a free slot starts on the next microtask (p-limit); only one without a slot is waiting.
      let state: 'waiting' | 'starting' | 'running' | 'abandoned' = mustWait ? 'waiting' : 'starting'
      const abandon = () => {
        if (state !== 'waiting') return
        state = 'abandoned'
        queued--
        reject(signal.reason)
      }
      if (mustWait) {
        queued++
        signal.addEventListener('abort', abandon, { once: true })
      }

      limit(async () => {
        if (state === 'abandoned') return
        if (state === 'waiting') {
          queued--
          signal.removeEventListener('abort', abandon)
        }
        state = 'running'
        const startedAt = performance.now()
        try {
          resolve(await task())
        } catch (error) {
          reject(error)
        } finally {
          const elapsed = performance.now() - startedAt
          averageCallMs = averageCallMs === 0 ? elapsed : averageCallMs + SMOOTHING * (elapsed - averageCallMs)
        }
      })
    })
  }

  return {
    run,
    refusal,
    get active () { return limit.activeCount },
    get queued () { return queued },
    stats: () => ({ active: limit.activeCount, queued, concurrency, maxQueue })
  }
}
