import createError from '@fastify/error'
import type { UpstreamName } from './lib/contract/upstreams.js'

// Errors a client can see. Each is declared once with a stable code; the central error handler renders them as JSON.
export const UserNotFoundError = createError<[string]>('AGG_ERR_USER_NOT_FOUND', 'User %s was not found', 404)
export const RequiredUpstreamTimeoutError = createError<[string]>('AGG_ERR_UPSTREAM_TIMEOUT', 'The %s upstream did not answer in time', 504)
export const RequiredUpstreamFailedError = createError<[string]>('AGG_ERR_UPSTREAM_FAILED', 'The %s upstream failed', 502)
export const RequiredUpstreamBusyError = createError<[string]>('AGG_ERR_UPSTREAM_BUSY', 'The %s upstream is at its concurrency limit; retry later', 503)
export const MergeQueueFullError = createError('AGG_ERR_MERGE_QUEUE_FULL', 'The merge pool is at capacity; retry later', 503)
export const MergeQueueTimeoutError = createError('AGG_ERR_MERGE_QUEUE_TIMEOUT', 'The merge could not start before the deadline; retry later', 503)
export const OverloadedError = createError('AGG_ERR_OVERLOADED', 'The gateway is under pressure; retry later', 503)
export const RouteNotFoundError = createError<[string, string]>('AGG_ERR_ROUTE_NOT_FOUND', 'Route %s %s not found', 404)

/** Why one upstream call produced no usable body. `cancelled` means the request itself went away, not the upstream. */
export type UpstreamFailureKind = 'timeout' | 'error' | 'rejected' | 'not-found' | 'cancelled'

/** An upstream call that failed; operational, never shown to clients as such. */
export class UpstreamCallError extends Error {
  readonly httpStatus: number | undefined

  constructor (
    readonly upstream: UpstreamName,
    readonly kind: UpstreamFailureKind,
    options: { cause?: unknown, httpStatus?: number, reason?: string } = {}
  ) {
    super(`${upstream} call failed: ${kind}${options.reason ? ` (${options.reason})` : ''}`, { cause: options.cause })
    this.name = 'UpstreamCallError'
    this.httpStatus = options.httpStatus
  }
}
