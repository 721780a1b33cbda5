import { UpstreamCallError } from '../../errors.js'
import type { CallStep } from '../pipeline.js'

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])

function isTimeout (reason: unknown): boolean {
  return (reason as Error | undefined)?.name === 'TimeoutError' || (reason as { code?: string } | undefined)?.code === 'FST_ERR_HANDLER_TIMEOUT'
}

// Failures before any response byte: the request never reached the upstream's handler, or its answer never started.
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])

/**
 * What went wrong, as the status the response reports: `timeout` when the signal's budget (or undici's net) ran out,
 * `cancelled` when it was aborted for any other reason (the request went away, a hedge won), else `error`.
 * `beforeResponse`: no response head had arrived, so a connection failure is safe to retry.
 */
export function toUpstreamCallError (upstream: string, error: unknown, signal: AbortSignal, beforeResponse = false): UpstreamCallError {
  if (error instanceof UpstreamCallError) return error
  if (signal.aborted) return new UpstreamCallError(upstream, isTimeout(signal.reason) ? 'timeout' : 'cancelled', { cause: error })
  const code = (error as { code?: string }).code
  if (code && TIMEOUT_CODES.has(code)) return new UpstreamCallError(upstream, 'timeout', { cause: error, reason: code })
  return new UpstreamCallError(upstream, 'error', { cause: error, reason: code, retriable: beforeResponse && code !== undefined && CONNECTION_CODES.has(code) })
}

/** Outermost step: whatever went wrong further in becomes an {@link UpstreamCallError}. */
export function classifyErrors (upstream: string): CallStep {
  return (next) => async (call) => {
    try {
      return await next(call)
    } catch (error) {
      throw toUpstreamCallError(upstream, error, call.signal)
    }
  }
}
