import { UpstreamCallError } from '../../errors.js'
import type { CallStep } from '../pipeline.js'

/** A call with no time left before the deadline is a timeout at once: it never queues, never opens a connection. */
export function requireBudget (upstream: string): CallStep {
  return (next) => (call) => call.budgetMs <= 0
    ? Promise.reject(new UpstreamCallError(upstream, 'timeout', { reason: 'no time left before the deadline' }))
    : next(call)
}
