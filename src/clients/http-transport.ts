import { Pool } from 'undici'
import { UpstreamCallError } from '../errors.js'
import { pathFor, type UpstreamDeclaration } from '../lib/contract/upstreams.js'
import type { LatencyWindow } from '../lib/resilience/latency-window.js'
import type { CallHandler } from './pipeline.js'
import { guardedConnect } from './response-header-guard.js'
import { toUpstreamCallError } from './steps/classify-errors.js'

export interface HttpTransportOptions {
  url: string
  /** Keep-alive connections: as many as calls allowed in flight. */
  connections: number
  timeoutMs: number
  maxBodyBytes: number
  keepAliveTimeoutMs: number
  /** Where the latency of every answered call is recorded. */
  latency: LatencyWindow
}

// Statuses that say the upstream (or a proxy before it) could not take the request now: safe to retry a GET.
const RETRIABLE_STATUSES = new Set([502, 503, 504])

// undici's own timers are coarse (see undici#1987); the per-call signal is the real timeout and these only a net.
const SAFETY_NET_MS = 1000

/**
 * The last step: one GET on an undici Pool, the call's signal passed through. A 2xx body is read whole (undici cuts
 * it off past `maxBodyBytes`); any other status is dumped, so no connection is left stalled, and is an `error`.
 * Every failure leaves as an `UpstreamCallError` that says whether it is safe to retry.
 */
export function createHttpTransport (declaration: UpstreamDeclaration, options: HttpTransportOptions) {
  const { url, connections, timeoutMs, maxBodyBytes, keepAliveTimeoutMs, latency } = options
  const pool = new Pool(url, {
    connections,
    pipelining: 1,
    keepAliveTimeout: keepAliveTimeoutMs,
    headersTimeout: timeoutMs + SAFETY_NET_MS,
    bodyTimeout: timeoutMs + SAFETY_NET_MS,
    // A response head over 16 KiB destroys the socket before undici parses it: past its maxHeaderSize undici keeps
    // parsing and builds an error per header, 60-120 ms of main-thread CPU for 10,000 headers (test/clients/response-header-guard.bench.ts).
    // With a connect function, the connect timeout moves into it.
    connect: guardedConnect({ connector: { timeout: timeoutMs + SAFETY_NET_MS } }),
    maxResponseSize: maxBodyBytes
  })

  const handle: CallHandler = async ({ userId, signal, budgetMs, requestId, trace }) => {
    const startedAt = performance.now()
    trace.attempts++
    let response
    try {
      response = await pool.request({
        method: 'GET',
        path: pathFor(declaration, userId),
        signal,
        headers: { accept: 'application/json', 'x-request-id': requestId, 'x-request-deadline-ms': String(Math.max(0, Math.round(budgetMs))) }
      })
    } catch (error) {
      throw toUpstreamCallError(declaration.name, error, signal, true)
    }
    const { statusCode, body } = response
    if (statusCode < 200 || statusCode > 299) {
      await body.dump({ signal, limit: 64 * 1024 }).catch(() => {})
      throw new UpstreamCallError(declaration.name, 'error', { httpStatus: statusCode, reason: `HTTP ${statusCode}`, retriable: RETRIABLE_STATUSES.has(statusCode) })
    }
    try {
      const bytes = new Uint8Array(await body.arrayBuffer())
      latency.record(performance.now() - startedAt)
      return bytes
    } catch (error) {
      throw toUpstreamCallError(declaration.name, error, signal)
    }
  }

  return {
    handle,
    stats: () => {
      const { connected, free, pending, running, size } = pool.stats
      return { connected, free, pending, running, size }
    },
    close: () => pool.close()
  }
}
