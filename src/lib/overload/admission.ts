/**
 * Admission for aggregates: an adaptive limit on requests in flight, and in front of it a short, bounded queue with
 * CoDel timeouts and adaptive LIFO. No Fastify, no HTTP: the caller says when a request arrives and when it is done.
 *
 * Why these two, measured against the event-loop controller they replace: that one steered on event-loop utilisation,
 * which also counts time the main thread waits for a CPU another process holds, so it shed at low load; and it let a
 * burst start every fan-out and then failed most of them at the merge. Here nothing is shed while fewer requests are
 * in flight than the limit, and the limit only moves on the time requests spend in this process.
 */

export type ShedReason = 'queue-full' | 'queue-timeout'

export interface AdmissionOptions {
  /** Requests in flight allowed at start; the limit then adapts between the two bounds. */
  initialLimit: number
  minLimit: number
  maxLimit: number
  /** Requests allowed to wait for a slot; more are turned away at once. */
  maxQueue: number
  /** CoDel: while a queue has stood for `queueIntervalMs`, a request may wait only this long. */
  queueTargetMs: number
  /** CoDel: the longest any request may wait, and how long a queue may stand before waits are cut to the target. */
  queueIntervalMs: number
  /** Gradient2's tolerance: recent own time may reach this multiple of the long-run average before the limit drops. */
  latencyTolerance: number
  /** How often the limit is recomputed from the samples of the last interval. */
  updateIntervalMs?: number
  /** A clock in ms (tests). */
  now?: () => number
}

export interface AdmissionStats {
  limit: number
  inFlight: number
  queued: number
  maxQueue: number
  /** Average own time (handler time not spent waiting on upstreams) of the last interval, and its long-run average. */
  recentOwnMs: number
  baselineOwnMs: number
}

interface Waiter {
  enqueuedAt: number
  expiresAt: number
  start: (waitedMs: number) => void
  reject: (reason: ShedReason) => void
  done: boolean
}

export interface Admission {
  /**
   * A request arrives. Returns null when it is admitted now (`start` has been called) or queued (`start` or `reject`
   * will be called later), else the reason it is turned away at once (neither is called).
   */
  enter (start: (waitedMs: number) => void, reject: (reason: ShedReason) => void): { reason: ShedReason } | { cancel: () => void } | null
  /** An admitted request is done: its slot goes to the next one waiting. */
  leave (): void
  /** One finished aggregate's own time: its duration minus the slowest upstream call, what this process added. */
  recordOwnTime (ms: number): void
  stats (): AdmissionStats
  stop (): void
}

// Gradient2's defaults (Netflix concurrency-limits): smoothing of the limit, and the long-run average's window.
const LIMIT_SMOOTHING = 0.2
const BASELINE_WINDOW = 600
// Samples under this many ms are rounded up: at 1-3 ms, scheduler jitter alone would look like a doubling.
const OWN_TIME_FLOOR_MS = 2
const SWEEP_INTERVAL_MS = 5

/**
 * Creates an admission controller. The limit follows Netflix's Gradient2: every interval,
 * `gradient = clamp(tolerance × baseline / recent, 0.5, 1)` and `limit ← limit × gradient + √limit`, smoothed; the
 * baseline is a long-run average of own time that drifts with the workload, so there is no minimum-RTT probe that
 * pins concurrency (the 503 storms of Envoy's gradient filter, envoy#18152). As in Gradient2, the limit does not move
 * while fewer than half of it are in flight: when the process is not the bottleneck, a slow sample says nothing.
 *
 * The queue follows CoDel as Facebook uses it for request queues ("Fail at Scale", 2015): a request may wait up to
 * `queueIntervalMs`, but once the queue has not been empty for that long, only `queueTargetMs`; and while it stands,
 * the newest request is served first (adaptive LIFO), since the oldest callers are the likeliest to have given up.
 */
export function createAdmission (options: AdmissionOptions): Admission {
  const { minLimit, maxLimit, maxQueue, queueTargetMs, queueIntervalMs, latencyTolerance } = options
  const now = options.now ?? (() => performance.now())
  const updateIntervalMs = options.updateIntervalMs ?? 100
  if (!(minLimit >= 1 && minLimit <= maxLimit)) throw new TypeError(`Expected 1 <= minLimit <= maxLimit, got ${minLimit} and ${maxLimit}`)

  let limit = Math.min(maxLimit, Math.max(minLimit, options.initialLimit))
  let inFlight = 0
  let queue: Waiter[] = []
  // When the queue was last empty: a queue that has not been empty for queueIntervalMs is standing.
  let lastEmptyAt = now()

  let sampleSum = 0
  let sampleCount = 0
  let peakInFlight = 0
  let recentOwnMs = 0
  let baselineOwnMs = 0
  let baselineCount = 0

  const standing = () => queue.length > 0 && now() - lastEmptyAt > queueIntervalMs

  function updateLimit () {
    if (sampleCount === 0) return
    const recent = Math.max(OWN_TIME_FLOOR_MS, sampleSum / sampleCount)
    const busy = peakInFlight
    recentOwnMs = recent
    sampleSum = 0
    sampleCount = 0
    peakInFlight = inFlight
    // The long-run average, a plain mean until it has a window of samples; it decays faster while it is far above
    // the recent value (Gradient2), so a past slow period does not keep the limit high.
    baselineCount = Math.min(BASELINE_WINDOW, baselineCount + 1)
    const factor = baselineOwnMs / recent > 2 ? 0.5 : 1 / baselineCount
    baselineOwnMs = baselineOwnMs === 0 ? recent : baselineOwnMs + factor * (recent - baselineOwnMs)
    if (busy < limit / 2) return
    const gradient = Math.max(0.5, Math.min(1, (latencyTolerance * baselineOwnMs) / recent))
    const next = limit * gradient + Math.sqrt(limit)
    limit = Math.min(maxLimit, Math.max(minLimit, limit * (1 - LIMIT_SMOOTHING) + next * LIMIT_SMOOTHING))
  }
  const updater = setInterval(updateLimit, updateIntervalMs)
  updater.unref()

  let sweeper: NodeJS.Timeout | undefined
  function sweep () {
    const at = now()
    if (queue.some((waiter) => waiter.expiresAt <= at)) {
      const kept: Waiter[] = []
      for (const waiter of queue) {
        if (waiter.expiresAt > at) kept.push(waiter)
        else finish(waiter, false)
      }
      queue = kept
    }
    if (queue.length === 0) stopSweeping()
  }
  function stopSweeping () {
    clearInterval(sweeper)
    sweeper = undefined
    lastEmptyAt = now()
  }

  function finish (waiter: Waiter, admitted: boolean) {
    if (waiter.done) return
    waiter.done = true
    if (!admitted) {
      waiter.reject('queue-timeout')
      return
    }
    const waitedMs = now() - waiter.enqueuedAt
    inFlight++
    if (inFlight > peakInFlight) peakInFlight = inFlight
    waiter.start(waitedMs)
  }

  function admitNext () {
    while (inFlight < limit && queue.length > 0) {
      // Adaptive LIFO: the newest first while the queue stands, in order otherwise.
      const waiter = standing() ? queue.pop()! : queue.shift()!
      if (queue.length === 0) stopSweeping()
      if (waiter.expiresAt <= now()) finish(waiter, false)
      else finish(waiter, true)
    }
  }

  return {
    enter (start, reject) {
      if (inFlight < limit && queue.length === 0) {
        inFlight++
        if (inFlight > peakInFlight) peakInFlight = inFlight
        start(0)
        return null
      }
      if (queue.length >= maxQueue) return { reason: 'queue-full' }
      const at = now()
      if (queue.length === 0) lastEmptyAt = at
      const timeoutMs = standing() ? queueTargetMs : queueIntervalMs
      const waiter: Waiter = { enqueuedAt: at, expiresAt: at + timeoutMs, start, reject, done: false }
      queue.push(waiter)
      if (sweeper === undefined) {
        sweeper = setInterval(sweep, SWEEP_INTERVAL_MS)
        sweeper.unref()
      }
      return {
        cancel () {
          if (waiter.done) return
          waiter.done = true
          queue = queue.filter((other) => other !== waiter)
          if (queue.length === 0) stopSweeping()
        }
      }
    },
    leave () {
      inFlight = Math.max(0, inFlight - 1)
      admitNext()
    },
    recordOwnTime (ms) {
      sampleSum += ms
      sampleCount++
    },
    stats () {
      return {
        limit: Math.round(limit * 10) / 10,
        inFlight,
        queued: queue.length,
        maxQueue,
        recentOwnMs: Math.round(recentOwnMs * 100) / 100,
        baselineOwnMs: Math.round(baselineOwnMs * 100) / 100
      }
    },
    stop () {
      clearInterval(updater)
      clearInterval(sweeper)
      for (const waiter of queue) finish(waiter, false)
      queue = []
    }
  }
}
