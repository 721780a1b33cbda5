/**
 * The path of one upstream call, as a pipeline of steps around the transport (the way undici composes interceptors):
 * each step gets the call and the next step, and may answer, refuse, wait, retry or translate errors. A resilience
 * policy is one more step, not an edit across files.
 */

/** What the steps did for one call, for `meta.upstreams.<name>`; written by the steps, read by whoever made the call. */
export interface CallTrace {
  /** Requests sent to the upstream: the first, a retry, a hedge. */
  attempts: number
  /** Set when a hedge was sent: whether its answer was the one used. */
  hedge?: 'won' | 'lost'
  /** This call joined another caller's call for the same user. */
  coalesced?: boolean
}

export interface UpstreamCall {
  readonly userId: string
  /** Aborts the call: its own budget, the request deadline, client disconnect, or the fan-out giving up. */
  readonly signal: AbortSignal
  /** The most this call may take, queue wait included. */
  readonly budgetMs: number
  readonly requestId: string
  readonly trace: CallTrace
  /**
   * `batch`: a batch item's call, held to the batch's own share of the upstream (src/lib/batch) so interactive
   * calls keep theirs. Its tries may be given their own timeout and number.
   */
  readonly lane?: 'interactive' | 'batch'
  readonly retries?: number
  readonly perTryTimeoutMs?: number
}

/** A stage that answers a call with the upstream's raw body, or throws an `UpstreamCallError`. */
export type CallHandler = (call: UpstreamCall) => Promise<Uint8Array>

/** Wraps the next handler. */
export type CallStep = (next: CallHandler) => CallHandler

/** `steps[0]` runs first and `transport` last. */
export function composeSteps (steps: readonly CallStep[], transport: CallHandler): CallHandler {
  return steps.reduceRight<CallHandler>((next, step) => step(next), transport)
}
