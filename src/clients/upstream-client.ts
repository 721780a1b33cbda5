import { Pool } from 'undici'
import type { UpstreamConfig } from '../config.js'
import { BulkheadRejectedError, createBulkhead, type BulkheadState } from '../lib/resilience/bulkhead.js'
import { UpstreamCallError } from '../errors.js'
import { UPSTREAMS, type UpstreamName } from '../lib/contract/upstreams.js'
import { guardedConnect } from './response-header-guard.js'

export interface FetchOptions {
  /** Aborts the call: its own budget, the request deadline, client disconnect, or the fan-out giving up. */
  signal: AbortSignal
  /** The most this call may take, queue wait included. */
  budgetMs: number
  requestId: string
}

export interface UpstreamClient {
  readonly name: UpstreamName
  readonly timeoutMs: number
  readonly bulkhead: BulkheadState
  /** The user's raw body from this upstream, or an {@link UpstreamCallError}. */
  fetchBody (userId: string, options: FetchOptions): Promise<Uint8Array>
  /** Connection pool state, for telemetry. */
  connectionStats (): { connected: number, free: number, pending: number, running: number, size: number }
  close (): Promise<void>
}

export interface TransportOptions {
  keepAliveTimeoutMs: number
}

// undici's own timers are coarse (see undici#1987); the per-call signal is the real timeout and these only a net.
const SAFETY_NET_MS = 1000

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])

function isTimeout (reason: unknown): boolean {
  return (reason as Error | undefined)?.name === 'TimeoutError' || (reason as { code?: string } | undefined)?.code === 'FST_ERR_HANDLER_TIMEOUT'
}

/**
 * A client for one upstream: an undici Pool with as many keep-alive connections as calls allowed in flight, a bulkhead
 * in front of it, and one AbortSignal per call combining the caller's signal with the call's own budget.
 * Every body is read in full or dumped, so no connection is left stalled.
 */
export function createUpstreamClient (config: UpstreamConfig, transport: TransportOptions): UpstreamClient {
  const { name, url, timeoutMs, concurrency, maxQueue, maxBodyBytes } = config
  const pathFor = UPSTREAMS[name].pathFor
  const pool = new Pool(url, {
    connections: concurrency,
    pipelining: 1,
    keepAliveTimeout: transport.keepAliveTimeoutMs,
    headersTimeout: timeoutMs + SAFETY_NET_MS,
    bodyTimeout: timeoutMs + SAFETY_NET_MS,
    // A response head over 16 KiB destroys the socket before undici parses it: past its maxHeaderSize undici keeps
    // parsing and builds an error per header, 60-120 ms of main-thread CPU for 10,000 headers (bench/header-flood.ts).
    // With a connect function, the connect timeout moves into it.
    connect: guardedConnect({ connector: { timeout: timeoutMs + SAFETY_NET_MS } }),
    maxResponseSize: maxBodyBytes
  })
  const bulkhead = createBulkhead({ concurrency, maxQueue })

  async function request (userId: string, signal: AbortSignal, budgetMs: number, requestId: string): Promise<Uint8Array> {
    const { statusCode, body } = await pool.request({
      method: 'GET',
      path: pathFor(userId),
      signal,
      headers: { accept: 'application/json', 'x-request-id': requestId, 'x-request-deadline-ms': String(budgetMs) }
    })
    if (statusCode < 200 || statusCode > 299) {
      await body.dump({ signal, limit: 64 * 1024 }).catch(() => {})
      throw new UpstreamCallError(name, statusCode === 404 ? 'not-found' : 'error', { httpStatus: statusCode, reason: `HTTP ${statusCode}` })
    }
    return new Uint8Array(await body.arrayBuffer())
  }

  async function fetchBody (userId: string, { signal, budgetMs, requestId }: FetchOptions): Promise<Uint8Array> {
    if (budgetMs <= 0) throw new UpstreamCallError(name, 'timeout', { reason: 'no time left before the deadline' })
    try {
      return await bulkhead.run(() => request(userId, signal, budgetMs, requestId), { signal, budgetMs })
    } catch (error) {
      if (error instanceof UpstreamCallError) throw error
      if (error instanceof BulkheadRejectedError) throw new UpstreamCallError(name, 'rejected', { cause: error, reason: error.reason })
      if (signal.aborted) {
        throw new UpstreamCallError(name, isTimeout(signal.reason) ? 'timeout' : 'cancelled', { cause: error })
      }
      const code = (error as { code?: string }).code
      throw new UpstreamCallError(name, code && TIMEOUT_CODES.has(code) ? 'timeout' : 'error', { cause: error, reason: code })
    }
  }

  return {
    name,
    timeoutMs,
    bulkhead,
    fetchBody,
    connectionStats: () => {
      const { connected, free, pending, running, size } = pool.stats
      return { connected, free, pending, running, size }
    },
    close: () => pool.close()
  }
}
