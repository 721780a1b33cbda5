import { channel } from 'node:diagnostics_channel'
import type { UpstreamReports } from './response.js'

/**
 * What the gateway publishes on `node:diagnostics_channel`, the way undici publishes `undici:request:*`. Features
 * publish; telemetry, the admission limit and anyone else subscribe. Nobody calls telemetry.
 */

/** `aggregator:request`: one aggregate answered, refused or failed after admission. */
export interface AggregateRequestMessage {
  requestId: string
  userId: string
  /** The HTTP status the aggregate answers with. */
  statusCode: number
  /** The error's code when it failed. */
  code?: string
  complete: boolean
  durationMs: number
  /** Time not spent waiting on the slowest upstream: what this process added (queueing, merge, hand-offs). */
  ownMs: number
  /** What each upstream did; null when the request was refused before any upstream was called. */
  upstreams: UpstreamReports | null
}

/** `aggregator:merge`: one merge ran, on a worker thread (`pool`) or on the event loop (`inline`). */
export interface MergeMessage {
  placement: 'pool' | 'inline'
  waitMs: number
  runMs: number
}

/** `aggregator:shed`: a request turned away to protect the gateway, before it was aggregated. */
export interface ShedMessage {
  reason: string
}

/** `aggregator:admission`: an aggregate admitted after waiting in the admission queue. */
export interface AdmissionMessage {
  waitedMs: number
}

/** `aggregator:circuit`: an upstream's circuit breaker changed state (logged once, counted by telemetry). */
export interface CircuitMessage {
  upstream: string
  from: 'closed' | 'open' | 'half-open'
  to: 'closed' | 'open' | 'half-open'
  reason: string
}

export const channels = {
  request: channel('aggregator:request'),
  merge: channel('aggregator:merge'),
  shed: channel('aggregator:shed'),
  admission: channel('aggregator:admission'),
  circuit: channel('aggregator:circuit')
} as const
