import createError from '@fastify/error'
import type { UpstreamStatus } from './lib/contract/response.js'

// Every error this service raises has a stable code (undici style). Those a client can see are declared once here and
// rendered as JSON by the central error handler.
export const UserNotFoundError = createError<[string]>('AGG_ERR_USER_NOT_FOUND', 'User %s was not found', 404)
export const RequiredUpstreamTimeoutError = createError<[string]>('AGG_ERR_UPSTREAM_TIMEOUT', 'The %s upstream did not answer in time', 504)
export const RequiredUpstreamFailedError = createError<[string]>('AGG_ERR_UPSTREAM_FAILED', 'The %s upstream failed', 502)
export const RequiredUpstreamBusyError = createError<[string]>('AGG_ERR_UPSTREAM_BUSY', 'The %s upstream is at its concurrency limit; retry later', 503)
/** The required upstream's circuit is open: answered at once, with `Retry-After` for when it will next be probed. */
export class RequiredUpstreamCircuitOpenError extends createError<[string]>('AGG_ERR_UPSTREAM_CIRCUIT_OPEN', 'The %s upstream is failing and its circuit is open; retry later', 503) {
  constructor (upstream: string, readonly retryAfterSeconds: number) {
    super(upstream)
  }
}
export const MergeQueueFullError = createError('AGG_ERR_MERGE_QUEUE_FULL', 'The merge pool is at capacity; retry later', 503)
export const MergeQueueTimeoutError = createError('AGG_ERR_MERGE_QUEUE_TIMEOUT', 'The merge could not start before the deadline; retry later', 503)
export const OverloadedError = createError('AGG_ERR_OVERLOADED', 'The gateway is under pressure; retry later', 503)
export const BatchNotFoundError = createError<[string]>('AGG_ERR_BATCH_NOT_FOUND', 'Batch %s was not found (finished batches are kept for BATCH_RETAIN_MS)', 404)
export const BatchStoreUnavailableError = createError<[string]>('AGG_ERR_BATCH_STORE_UNAVAILABLE', 'The batch store (Redis, BATCH_REDIS_URL) could not be reached: %s; retry later', 503)
export const RouteNotFoundError = createError<[string, string]>('AGG_ERR_ROUTE_NOT_FOUND', 'Route %s %s not found', 404)

/** How one upstream call can fail, as `meta.upstreams.<name>.status` reports it. `cancelled`: the request went away. */
export type UpstreamFailure = Extract<UpstreamStatus, 'timeout' | 'error' | 'rejected' | 'cancelled' | 'circuit-open'>

/** An upstream call that failed; operational, never shown to clients as such. `AGG_ERR_UPSTREAM_CALL_<STATUS>`. */
export class UpstreamCallError extends Error {
  readonly code: string
  readonly httpStatus: number | undefined
  /** Safe to try again for an idempotent GET: no response byte arrived, or the upstream said 502, 503 or 504. */
  readonly retriable: boolean
  /** `circuit-open`: how long until the circuit lets a probe through. */
  readonly retryAfterMs: number | undefined

  constructor (
    readonly upstream: string,
    readonly status: UpstreamFailure,
    options: { cause?: unknown, httpStatus?: number, reason?: string, retriable?: boolean, retryAfterMs?: number } = {}
  ) {
    super(`${upstream} call failed: ${status}${options.reason ? ` (${options.reason})` : ''}`, { cause: options.cause })
    this.name = 'UpstreamCallError'
    this.code = `AGG_ERR_UPSTREAM_CALL_${status.toUpperCase().replace('-', '_')}`
    this.httpStatus = options.httpStatus
    this.retriable = options.retriable ?? false
    this.retryAfterMs = options.retryAfterMs
  }
}
