import { UpstreamCallError } from '../../errors.js'
import type { CallVerdict, CircuitBreaker } from '../../lib/resilience/circuit-breaker.js'
import type { CallStep } from '../pipeline.js'

/**
 * What a failed call says about the upstream: a 4xx is an answer (the upstream is fine), a refusal or a cancellation
 * is ours, and a timeout shorter than the slow-call threshold is the deadline's doing, not the upstream's. A probe is
 * judged harder: one that was sent and did not succeed reopens the circuit, or a busy gateway, whose short deadlines
 * tell nothing, would let probe after probe through.
 */
function verdictOf (error: unknown, elapsedMs: number, slowCallMs: number, probe: boolean): CallVerdict {
  if (!(error instanceof UpstreamCallError)) return 'failure'
  switch (error.status) {
    case 'error': return error.httpStatus !== undefined && error.httpStatus < 500 ? 'success' : 'failure'
    case 'timeout': return probe || elapsedMs >= slowCallMs ? 'failure' : 'ignored'
    case 'cancelled': return probe ? 'failure' : 'ignored'
    default: return 'ignored'
  }
}

/**
 * While the circuit is open, the call is not made: it fails at once as `circuit-open`, saying when to try again. A
 * batch call's duration is not judged: a batch keeps its lane full on purpose, so its calls wait on this process (its
 * event loop, its merges) as much as on the upstream, and a breaker that read that as a slow upstream would stop the
 * batch for its own load. Its failures and timeouts count as any other call's.
 */
export function circuitBreakerStep (upstream: string, breaker: CircuitBreaker, slowCallMs: number): CallStep {
  return (next) => async (call) => {
    const permit = breaker.acquire()
    if ('retryAfterMs' in permit) throw new UpstreamCallError(upstream, 'circuit-open', { retryAfterMs: permit.retryAfterMs })
    const judgeSlowness = call.lane !== 'batch'
    try {
      const body = await next(call)
      breaker.release(permit, 'success', judgeSlowness)
      return body
    } catch (error) {
      breaker.release(permit, verdictOf(error, performance.now() - permit.startedAt, slowCallMs, permit.probe), judgeSlowness)
      throw error
    }
  }
}
