import type { UpstreamReports, UpstreamStatus } from '../contract/response.js'

// Rolling statistics for the live dashboard, in the manner of Hystrix's rolling windows: a ring of quarter-second
// buckets; rates and percentiles over the last few seconds; health from the last second, so a failing upstream shows
// within two seconds even with one snapshot a second (worst case: 200 ms timeout + half a second of failures + 1 s tick).

// Latency histogram bounds (ms), roughly log-spaced: precise enough for p50/p99 on a dashboard, fixed memory.
const LATENCY_BOUNDS_MS = [1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 130, 160, 200, 250, 300, 400, 500, 700, 1000, 1500, 2000, 3000, 5000, 10_000]
const BUCKET_MS = 250
const BUCKETS_PER_SECOND = 1000 / BUCKET_MS
const RING_BUCKETS = 64 * BUCKETS_PER_SECOND
const HEALTH_BUCKETS = BUCKETS_PER_SECOND

interface Bucket {
  slot: number
  calls: number
  byStatus: Record<UpstreamStatus, number>
  fallbacks: number
  latency: Uint32Array
}

const emptyStatusCounts = (): Record<UpstreamStatus, number> => ({ ok: 0, timeout: 0, error: 0, rejected: 0, malformed: 0, cancelled: 0, 'merge-failed': 0, 'circuit-open': 0 })

function latencyBucket (latencyMs: number): number {
  const index = LATENCY_BOUNDS_MS.findIndex((bound) => latencyMs <= bound)
  return index === -1 ? LATENCY_BOUNDS_MS.length : index
}

/** A ring of quarter-second buckets for one stream of calls; a slot is a bucket's number since the epoch. */
function createRing () {
  const ring: Bucket[] = Array.from({ length: RING_BUCKETS }, () => ({
    slot: -1, calls: 0, byStatus: emptyStatusCounts(), fallbacks: 0, latency: new Uint32Array(LATENCY_BOUNDS_MS.length + 1)
  }))

  function bucketFor (slot: number): Bucket {
    const bucket = ring[slot % RING_BUCKETS]!
    if (bucket.slot !== slot) {
      bucket.slot = slot
      bucket.calls = 0
      bucket.byStatus = emptyStatusCounts()
      bucket.fallbacks = 0
      bucket.latency.fill(0)
    }
    return bucket
  }

  function record (slot: number, status: UpstreamStatus, latencyMs: number, fallback: boolean) {
    const bucket = bucketFor(slot)
    bucket.calls++
    bucket.byStatus[status]++
    if (fallback) bucket.fallbacks++
    bucket.latency[latencyBucket(latencyMs)]!++
  }

  /** Totals over the `count` buckets before slot `end` (exclusive). */
  function window (end: number, count: number) {
    const totals = { calls: 0, byStatus: emptyStatusCounts(), fallbacks: 0, latency: new Uint32Array(LATENCY_BOUNDS_MS.length + 1) }
    for (let slot = end - count; slot < end; slot++) {
      const bucket = ring[((slot % RING_BUCKETS) + RING_BUCKETS) % RING_BUCKETS]!
      if (bucket.slot !== slot) continue
      totals.calls += bucket.calls
      totals.fallbacks += bucket.fallbacks
      for (const status of Object.keys(totals.byStatus) as UpstreamStatus[]) totals.byStatus[status] += bucket.byStatus[status]
      for (let index = 0; index < totals.latency.length; index++) totals.latency[index]! += bucket.latency[index]!
    }
    return totals
  }

  return { record, window }
}

function percentile (histogram: Uint32Array, total: number, fraction: number): number | null {
  if (total === 0) return null
  const rank = Math.ceil(total * fraction)
  let seen = 0
  for (let index = 0; index < histogram.length; index++) {
    seen += histogram[index]!
    if (seen >= rank) return LATENCY_BOUNDS_MS[index] ?? LATENCY_BOUNDS_MS.at(-1)! * 2
  }
  return null
}

export type Health = 'idle' | 'ok' | 'degraded' | 'failing'

export interface StreamStats {
  /** Calls per second over the window. */
  rate: number
  /** Upper bound of the latency bucket holding the median / 99th percentile, in ms; null without calls. */
  p50Ms: number | null
  p99Ms: number | null
  errorRate: number
  timeoutRate: number
  rejectedRate: number
  fallbackRate: number
  /** From the last second only (the current bucket included), so a failure shows at once. */
  health: Health
}

function summarise (ring: ReturnType<typeof createRing>, nowSlot: number, windowSeconds: number): StreamStats {
  // Rates and percentiles over complete buckets; health over the last second, the current, partial bucket included.
  const totals = ring.window(nowSlot, windowSeconds * BUCKETS_PER_SECOND)
  const recent = ring.window(nowSlot + 1, HEALTH_BUCKETS)
  const share = (count: number, total: number) => total === 0 ? 0 : Math.round((count / total) * 1000) / 1000
  const failed = (counts: typeof totals) => counts.byStatus.timeout + counts.byStatus.error + counts.byStatus.malformed + counts.byStatus.rejected + counts.byStatus['merge-failed']
  const recentFailure = share(failed(recent), recent.calls)
  return {
    rate: Math.round((totals.calls / windowSeconds) * 10) / 10,
    p50Ms: percentile(totals.latency, totals.calls, 0.5),
    p99Ms: percentile(totals.latency, totals.calls, 0.99),
    errorRate: share(totals.byStatus.error + totals.byStatus.malformed + totals.byStatus['merge-failed'], totals.calls),
    timeoutRate: share(totals.byStatus.timeout, totals.calls),
    rejectedRate: share(totals.byStatus.rejected, totals.calls),
    fallbackRate: share(totals.fallbacks, totals.calls),
    health: recent.calls === 0 ? 'idle' : recentFailure >= 0.5 ? 'failing' : recentFailure > 0.05 ? 'degraded' : 'ok'
  }
}

/**
 * Rolling statistics of aggregate requests and of each upstream's calls.
 */
export function createLiveStats (upstreamNames: readonly string[], { windowSeconds = 10, clock = () => Date.now() } = {}) {
  const upstreams = Object.fromEntries(upstreamNames.map((name) => [name, createRing()]))
  const requests = createRing()
  const shed = createRing()
  const currentSlot = () => Math.floor(clock() / BUCKET_MS)

  return {
    windowSeconds,
    /** One aggregate request: its overall outcome and, when upstreams were called, what each of them did. */
    recordAggregate (statusCode: number, durationMs: number, partial: boolean, reports: UpstreamReports | null) {
      const now = currentSlot()
      requests.record(now, statusCode >= 500 ? 'error' : 'ok', durationMs, partial)
      if (!reports) return
      for (const name of upstreamNames) {
        const { status, latencyMs, fallback } = reports[name]!
        upstreams[name]!.record(now, status, latencyMs, fallback !== 'none')
      }
    },
    recordShed () {
      shed.record(currentSlot(), 'rejected', 0, false)
    },
    /** Statistics over the last `windowSeconds` seconds. */
    summary () {
      const now = currentSlot()
      const requestStats = summarise(requests, now, windowSeconds)
      return {
        // For requests, "fallbackRate" is the share of partial 200s.
        requests: { rate: requestStats.rate, p50Ms: requestStats.p50Ms, p99Ms: requestStats.p99Ms, errorRate: requestStats.errorRate, partialRate: requestStats.fallbackRate },
        shedRate: Math.round((shed.window(now, windowSeconds * BUCKETS_PER_SECOND).calls / windowSeconds) * 10) / 10,
        upstreams: Object.fromEntries(upstreamNames.map((name) => [name, summarise(upstreams[name]!, now, windowSeconds)])) as Record<string, StreamStats>
      }
    }
  }
}

export type LiveStats = ReturnType<typeof createLiveStats>
