import { UpstreamCallError } from '../../errors.js'
import { BulkheadRejectedError, type Bulkhead } from '../../lib/resilience/bulkhead.js'
import type { CallStep } from '../pipeline.js'

/**
 * At most `concurrency` calls in flight; the rest wait in a bounded, cancellable queue or are `rejected` at once. A
 * batch's calls have a bulkhead of their own, so a batch can never take the slots interactive calls need.
 */
export function bulkheadStep (upstream: string, bulkhead: Bulkhead, batchBulkhead: Bulkhead = bulkhead): CallStep {
  return (next) => async (call) => {
    try {
      return await (call.lane === 'batch' ? batchBulkhead : bulkhead).run(() => next(call), { signal: call.signal, budgetMs: call.budgetMs })
    } catch (error) {
      if (error instanceof BulkheadRejectedError) throw new UpstreamCallError(upstream, 'rejected', { cause: error, reason: error.reason })
      throw error
    }
  }
}
