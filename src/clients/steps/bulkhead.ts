import { UpstreamCallError } from '../../errors.js'
import { BulkheadRejectedError, type Bulkhead } from '../../lib/resilience/bulkhead.js'
import type { CallStep } from '../pipeline.js'

/** At most `concurrency` calls in flight; the rest wait in a bounded, cancellable queue or are `rejected` at once. */
export function bulkheadStep (upstream: string, bulkhead: Bulkhead): CallStep {
  return (next) => async (call) => {
    try {
      return await bulkhead.run(() => next(call), { signal: call.signal, budgetMs: call.budgetMs })
    } catch (error) {
      if (error instanceof BulkheadRejectedError) throw new UpstreamCallError(upstream, 'rejected', { cause: error, reason: error.reason })
      throw error
    }
  }
}
