import { UpstreamCallError } from '../../errors.js'
import type { CallStep } from '../pipeline.js'

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])

function isTimeout (reason: unknown): boolean {
  return (reason as Error | undefined)?.name === 'TimeoutError' || (reason as { code?: string } | undefined)?.code === 'FST_ERR_HANDLER_TIMEOUT'
}

/**
 * Outermost step: whatever went wrong further in becomes an {@link UpstreamCallError} with the status the response
 * reports — `timeout` when the call's own budget (or undici's net) ran out, `cancelled` when the request went away.
 */
export function classifyErrors (upstream: string): CallStep {
  return (next) => async (call) => {
    try {
      return await next(call)
    } catch (error) {
      if (error instanceof UpstreamCallError) throw error
      if (call.signal.aborted) throw new UpstreamCallError(upstream, isTimeout(call.signal.reason) ? 'timeout' : 'cancelled', { cause: error })
      const code = (error as { code?: string }).code
      throw new UpstreamCallError(upstream, code && TIMEOUT_CODES.has(code) ? 'timeout' : 'error', { cause: error, reason: code })
    }
  }
}
