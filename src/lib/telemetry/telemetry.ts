import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { BATCH_STATUSES, type BatchListing } from '../batch/batch-contract.js'
import { channels, type AdmissionMessage, type AggregateRequestMessage, type MergeMessage, type ShedMessage } from '../contract/events.js'
import type { MERGE_WORK_COUNTERS } from '../merge/merge-sections.js'
import type { AdmissionStats } from '../overload/admission.js'
import { percentile } from '../percentile.js'
import { createLiveStats, type StreamStats } from './live-stats.js'

type CircuitState = 'closed' | 'open' | 'half-open'
const CIRCUIT_STATES: readonly CircuitState[] = ['closed', 'open', 'half-open']

/** What one upstream's client can report about itself at any moment. */
export interface UpstreamState {
  bulkhead: { active: number, queued: number, concurrency: number, maxQueue: number }
  connections: { connected: number, free: number, pending: number, running: number, size: number }
  /** null: the upstream has no circuit breaker. */
  circuit: { state: CircuitState, openForMs: number, transitions: Record<CircuitState, number> } | null
  /** Counted since start. */
  calls: { retries: number, retriesSkipped: { budget: number, deadline: number }, hedges: number, hedgesWon: number, coalesced: number }
}

/** What the merge pool can report about itself at any moment. */
export interface MergePoolState {
  threads: number
  queueSize: number
  maxQueue: number
  /** Share of the pool's capacity used since it started (piscina's `utilization`). */
  utilization: number
  work: Record<typeof MERGE_WORK_COUNTERS[number], number>
}

/** Where telemetry pulls state from: it is handed these, it imports none of them. */
export interface TelemetrySources {
  upstreams: () => Record<string, UpstreamState>
  mergePool: () => MergePoolState
  admission: () => AdmissionStats | null
  batches: () => BatchListing[]
  eventLoop: { lag (windowMs: number): { p99Ms: number }, utilization (): number }
}

export interface DashboardSnapshot {
  at: number
  windowSeconds: number
  requests: ReturnType<ReturnType<typeof createLiveStats>['summary']>['requests']
  shedRate: number
  shedTotal: number
  upstreams: Record<string, StreamStats & {
    inFlight: number
    queued: number
    concurrency: number
    maxQueue: number
    circuit: CircuitState | null
    /** Since start: retries made, hedges sent and won, calls shared by a caller that joined another's. */
    retries: number
    hedges: number
    hedgesWon: number
    coalesced: number
  }>
  mergePool: { threads: number, queueSize: number, maxQueue: number, busyThreads: number, waitP99Ms: number | null, runP99Ms: number | null, tasks: number, candidatesScored: number }
  eventLoop: { delayP99Ms: number, utilization: number }
  memory: { rssBytes: number, heapUsedBytes: number }
  admission: AdmissionStats | null
  shedByReason: Record<string, number>
  /** Running batches and the latest finished ones, with the last minute of stage samples. */
  batches: BatchListing[]
}

const SECONDS = 1000
// Request and upstream latencies: around the 300 ms deadline, where the interesting differences are.
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1, 2.5, 5]
const MERGE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
// Error codes that mean the gateway turned work away to protect itself.
const SHED_ERRORS: Record<string, string> = { AGG_ERR_MERGE_QUEUE_FULL: 'merge_queue_full', AGG_ERR_MERGE_QUEUE_TIMEOUT: 'merge_queue_timeout' }

/**
 * Everything the gateway measures, in one place: Prometheus metrics (request and upstream latencies by outcome,
 * fallbacks, bulkheads, connection pools, worker pool and the work its threads did, shedding, event loop, memory) and
 * rolling per-second statistics for the live dashboard. It subscribes to what the features publish on
 * diagnostics_channel (src/lib/contract/events.ts) and pulls their state from the sources it is handed; no feature
 * calls it.
 */
export function createTelemetry (upstreamNames: readonly string[], sources: TelemetrySources) {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  // prom-client names these three gauges like counters, which `promtool check metrics` rejects; the same data stays
  // available per type as nodejs_active_handles, nodejs_active_requests and nodejs_active_resources.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name)
  const liveStats = createLiveStats(upstreamNames, { windowSeconds: 10 })

  // Event loop, summarised every second by one timer, so neither scrapes nor dashboards reset each other's view.
  const eventLoop = { delayP99Ms: 0, utilization: 0 }

  const requestDuration = new Histogram({
    name: 'http_request_duration_seconds', help: 'Time to answer a request, by route and status.', labelNames: ['method', 'route', 'status_code'], buckets: LATENCY_BUCKETS, registers: [registry]
  })
  const upstreamDuration = new Histogram({
    name: 'aggregate_upstream_call_duration_seconds', help: 'Duration of one upstream call, by upstream and outcome (ok, timeout, error, rejected, malformed, cancelled).', labelNames: ['upstream', 'outcome'], buckets: LATENCY_BUCKETS, registers: [registry]
  })
  const fallbacks = new Counter({ name: 'aggregate_fallbacks_total', help: 'Sections served from a fallback, by upstream and kind (stale, default, omitted).', labelNames: ['upstream', 'kind'], registers: [registry] })
  const responses = new Counter({ name: 'aggregate_responses_total', help: 'Aggregate responses by result: complete, partial (200 with a fallback) or failed.', labelNames: ['result'], registers: [registry] })
  const shed = new Counter({ name: 'aggregate_load_shed_total', help: 'Requests turned away to protect the gateway, by reason.', labelNames: ['reason'], registers: [registry] })
  const queueWait = new Histogram({ name: 'aggregate_admission_queue_wait_seconds', help: 'Time an admitted aggregate waited in the admission queue (requests admitted at once are not counted).', buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5], registers: [registry] })
  const admissionGauge = (name: string, help: string, read: (state: AdmissionStats) => number) => new Gauge({
    name,
    help,
    registers: [registry],
    collect () { const state = sources.admission(); if (state) this.set(read(state)) }
  })
  admissionGauge('aggregate_admission_limit', 'Aggregates allowed in flight now (adaptive).', (state) => state.limit)
  admissionGauge('aggregate_admission_in_flight', 'Aggregates in flight.', (state) => state.inFlight)
  admissionGauge('aggregate_admission_queued', 'Aggregates waiting for admission.', (state) => state.queued)
  admissionGauge('aggregate_admission_queue_limit', 'Most aggregates allowed to wait for admission.', (state) => state.maxQueue)
  admissionGauge('aggregate_admission_own_time_seconds', 'Recent average own time of an aggregate (its duration minus the slowest upstream call), which steers the limit.', (state) => state.recentOwnMs / SECONDS)
  admissionGauge('aggregate_admission_own_time_baseline_seconds', 'Long-run average own time the recent one is compared with.', (state) => state.baselineOwnMs / SECONDS)
  const mergeWait = new Histogram({ name: 'aggregate_merge_wait_seconds', help: 'Time a merge waited for a worker thread.', buckets: MERGE_BUCKETS, registers: [registry] })
  const mergeRun = new Histogram({ name: 'aggregate_merge_run_seconds', help: 'Time a worker thread spent on one merge.', buckets: MERGE_BUCKETS, registers: [registry] })
  const mergeWaitRecent = createRecentSamples()
  const mergeRunRecent = createRecentSamples()

  const upstreamGauge = (name: string, help: string, read: (state: UpstreamState) => number) => new Gauge({
    name,
    help,
    labelNames: ['upstream'],
    registers: [registry],
    collect () {
      const states = sources.upstreams()
      for (const upstream of upstreamNames) this.set({ upstream }, read(states[upstream]!))
    }
  })
  upstreamGauge('aggregate_bulkhead_in_flight', 'Upstream calls in flight.', (state) => state.bulkhead.active)
  upstreamGauge('aggregate_bulkhead_queued', 'Upstream calls waiting for a bulkhead slot.', (state) => state.bulkhead.queued)
  upstreamGauge('aggregate_bulkhead_concurrency_limit', 'Most upstream calls allowed in flight.', (state) => state.bulkhead.concurrency)
  upstreamGauge('aggregate_bulkhead_queue_limit', 'Most upstream calls allowed to wait.', (state) => state.bulkhead.maxQueue)
  new Gauge({ // eslint-disable-line no-new
    name: 'aggregate_circuit_state',
    help: 'Circuit breaker state per upstream: 1 for the state it is in, 0 for the others (no series for an upstream without a breaker).',
    labelNames: ['upstream', 'state'],
    registers: [registry],
    collect () {
      const states = sources.upstreams()
      for (const upstream of upstreamNames) {
        const circuit = states[upstream]!.circuit
        if (circuit) for (const state of CIRCUIT_STATES) this.set({ upstream, state }, circuit.state === state ? 1 : 0)
      }
    }
  })
  // Counted by each client since start, read at scrape time.
  const upstreamCounter = (name: string, help: string, labelName: string, read: (state: UpstreamState) => Record<string, number> | null) => new Counter({
    name,
    help,
    labelNames: ['upstream', labelName],
    registers: [registry],
    collect () {
      this.reset()
      const states = sources.upstreams()
      for (const upstream of upstreamNames) {
        for (const [label, value] of Object.entries(read(states[upstream]!) ?? {})) this.inc({ upstream, [labelName]: label }, value)
      }
    }
  })
  upstreamCounter('aggregate_circuit_transitions_total', 'Circuit breaker transitions into each state.', 'to', (state) => state.circuit?.transitions ?? null)
  upstreamCounter('aggregate_upstream_retries_total', 'Retries of failed upstream calls: made, or skipped because the retry budget was spent or the deadline could not fit one.', 'result', ({ calls }) => ({ made: calls.retries, 'skipped-budget': calls.retriesSkipped.budget, 'skipped-deadline': calls.retriesSkipped.deadline }))
  upstreamCounter('aggregate_upstream_hedges_total', 'Hedged requests sent for slow upstream calls, by whether the hedge\'s answer was used.', 'result', ({ calls }) => ({ won: calls.hedgesWon, lost: calls.hedges - calls.hedgesWon }))
  new Counter({ // eslint-disable-line no-new
    name: 'aggregate_upstream_coalesced_total',
    help: 'Upstream calls not made because the caller shared a concurrent call for the same user.',
    labelNames: ['upstream'],
    registers: [registry],
    collect () {
      this.reset()
      const states = sources.upstreams()
      for (const upstream of upstreamNames) this.inc({ upstream }, states[upstream]!.calls.coalesced)
    }
  })
  new Gauge({ // eslint-disable-line no-new
    name: 'aggregate_upstream_connections',
    help: 'Upstream connection pool state (undici PoolStats).',
    labelNames: ['upstream', 'state'],
    registers: [registry],
    collect () {
      const states = sources.upstreams()
      for (const upstream of upstreamNames) {
        for (const [state, value] of Object.entries(states[upstream]!.connections)) this.set({ upstream, state }, value)
      }
    }
  })

  const poolGauge = (name: string, help: string, read: (state: MergePoolState) => number) => new Gauge({
    name,
    help,
    registers: [registry],
    collect () { this.set(read(sources.mergePool())) }
  })
  poolGauge('aggregate_merge_pool_threads', 'Merge worker threads.', (state) => state.threads)
  poolGauge('aggregate_merge_pool_queue_size', 'Merges waiting for a thread.', (state) => state.queueSize)
  poolGauge('aggregate_merge_pool_queue_limit', 'Most merges allowed to wait.', (state) => state.maxQueue)
  poolGauge('aggregate_merge_pool_utilization', 'Share of the pool\'s capacity used since it started.', (state) => state.utilization)
  // Counted inside the worker threads with Atomics; read here without locks.
  const workCounter = (name: string, help: string, read: (state: MergePoolState) => number) => new Counter({
    name,
    help,
    registers: [registry],
    collect () {
      this.reset()
      this.inc(read(sources.mergePool()))
    }
  })
  workCounter('aggregate_merge_tasks_total', 'Merges completed by the worker threads.', (state) => state.work.tasks)
  workCounter('aggregate_merge_candidates_scored_total', 'Recommendation candidates scored by the worker threads.', (state) => state.work.candidatesScored)
  workCounter('aggregate_merge_bytes_parsed_total', 'Upstream body bytes parsed by the worker threads.', (state) => state.work.bytesParsed)
  workCounter('aggregate_merge_malformed_bodies_total', 'Upstream bodies the worker threads found malformed.', (state) => state.work.malformedBodies)

  const batchGauge = (name: string, help: string, labelNames: string[], collect: (gauge: Gauge, batches: BatchListing[]) => void) => new Gauge({
    name, help, labelNames, registers: [registry], collect () { this.reset(); collect(this, sources.batches()) }
  })
  batchGauge('aggregate_batches', 'Kept batches by status.', ['status'], (gauge, batches) => {
    const counts = Object.fromEntries(BATCH_STATUSES.map((status) => [status, 0]))
    for (const batch of batches) counts[batch.status]!++
    for (const status of BATCH_STATUSES) gauge.set({ status }, counts[status]!)
  })
  batchGauge('aggregate_batch_stage_in_flight', 'Items of running batches in each stage now: fetching (io), waiting for a merge (queue), merging (cpu).', ['stage'], (gauge, batches) => {
    const running = batches.filter((batch) => batch.status === 'running')
    gauge.set({ stage: 'io' }, running.reduce((sum, batch) => sum + batch.stages.io.inFlight, 0))
    gauge.set({ stage: 'queue' }, running.reduce((sum, batch) => sum + batch.stages.queue.size, 0))
    gauge.set({ stage: 'cpu' }, running.reduce((sum, batch) => sum + batch.stages.cpu.busy, 0))
  })
  // Per batch, since it started: rate() of these gives items/s; a batch's series goes when the batch is forgotten.
  batchGauge('aggregate_batch_items', 'Items of each kept batch by result (ok, partial, failed, retried: at least one upstream call retried).', ['batch', 'result'], (gauge, batches) => {
    for (const batch of batches) for (const result of ['ok', 'partial', 'failed', 'retried'] as const) gauge.set({ batch: batch.id, result }, batch[result])
  })

  new Gauge({ name: 'aggregate_event_loop_utilization', help: 'Event-loop utilisation over the last second (0..1).', registers: [registry], collect () { this.set(eventLoop.utilization) } }) // eslint-disable-line no-new
  new Gauge({ name: 'aggregate_event_loop_delay_p99_seconds', help: '99th percentile event-loop delay over the last second.', registers: [registry], collect () { this.set(eventLoop.delayP99Ms / SECONDS) } }) // eslint-disable-line no-new

  const subscribers = new Set<(snapshot: DashboardSnapshot) => void>()
  const shedByReason: Record<string, number> = {}
  // prom-client hashes the label values of every observation; a bound child per label set skips that on the hot path.
  const bound = new Map<string, { observe (value: number): void }>()
  const upstreamTimer = (upstream: string, outcome: string) => {
    const key = `${upstream}|${outcome}`
    let child = bound.get(key)
    if (child === undefined) bound.set(key, child = upstreamDuration.labels(upstream, outcome))
    return child
  }
  let latest = buildSnapshot()

  function buildSnapshot (): DashboardSnapshot {
    const summary = liveStats.summary()
    const states = sources.upstreams()
    const pool = sources.mergePool()
    const memory = process.memoryUsage()
    return {
      at: Date.now(),
      windowSeconds: liveStats.windowSeconds,
      requests: summary.requests,
      shedRate: summary.shedRate,
      shedTotal: Object.values(shedByReason).reduce((sum, count) => sum + count, 0),
      upstreams: Object.fromEntries(upstreamNames.map((name) => {
        const { bulkhead: { active, queued, concurrency, maxQueue }, circuit, calls } = states[name]!
        return [name, {
          ...summary.upstreams[name]!,
          inFlight: active,
          queued,
          concurrency,
          maxQueue,
          circuit: circuit?.state ?? null,
          retries: calls.retries,
          hedges: calls.hedges,
          hedgesWon: calls.hedgesWon,
          coalesced: calls.coalesced
        }]
      })),
      mergePool: {
        threads: pool.threads,
        queueSize: pool.queueSize,
        maxQueue: pool.maxQueue,
        busyThreads: mergeRunRecent.busy(),
        waitP99Ms: mergeWaitRecent.p99(),
        runP99Ms: mergeRunRecent.p99(),
        tasks: pool.work.tasks,
        candidatesScored: pool.work.candidatesScored
      },
      eventLoop: { ...eventLoop },
      memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed },
      admission: sources.admission(),
      shedByReason: { ...shedByReason },
      batches: sources.batches()
        .filter((batch) => batch.status === 'running' || batch.status === 'queued' || batch.samples.length > 0)
        .slice(-5)
        .map((batch) => ({ ...batch, samples: batch.samples.slice(-120) }))
    }
  }

  // One snapshot a second; health is checked four times a second, and a change is pushed at once, so a failing
  // upstream shows on the dashboard without waiting for the next second.
  let ticks = 0
  let lastHealth = ''
  const broadcast = () => {
    latest = buildSnapshot()
    lastHealth = upstreamNames.map((name) => latest.upstreams[name]!.health).join()
    for (const listener of subscribers) listener(latest)
  }
  const ticker = setInterval(() => {
    if (++ticks % 4 === 0) {
      eventLoop.utilization = Math.round(sources.eventLoop.utilization() * 1000) / 1000
      eventLoop.delayP99Ms = Math.round(sources.eventLoop.lag(SECONDS).p99Ms * 100) / 100
      mergeWaitRecent.roll()
      mergeRunRecent.roll()
      if (subscribers.size > 0) broadcast()
    } else if (subscribers.size > 0) {
      const summary = liveStats.summary()
      if (upstreamNames.map((name) => summary.upstreams[name]!.health).join() !== lastHealth) broadcast()
    }
  }, SECONDS / 4)
  ticker.unref()

  const onRequest = (message: unknown) => {
    const { statusCode, complete, durationMs, upstreams, code } = message as AggregateRequestMessage
    const result = statusCode !== 200 ? 'failed' : complete ? 'complete' : 'partial'
    responses.inc({ result })
    const shedReason = code === undefined ? undefined : SHED_ERRORS[code]
    if (shedReason) recordShed(shedReason)
    liveStats.recordAggregate(statusCode, durationMs, result === 'partial', upstreams)
    if (!upstreams) return
    for (const upstream of upstreamNames) {
      const { status, latencyMs, fallback } = upstreams[upstream]!
      upstreamTimer(upstream, status).observe(latencyMs / SECONDS)
      if (fallback !== 'none') fallbacks.inc({ upstream, kind: fallback })
    }
  }
  const onMerge = (message: unknown) => {
    const { waitMs, runMs } = message as MergeMessage
    mergeWait.observe(waitMs / SECONDS)
    mergeRun.observe(runMs / SECONDS)
    mergeWaitRecent.add(waitMs)
    mergeRunRecent.add(runMs)
  }
  function recordShed (reason: string) {
    shed.inc({ reason })
    shedByReason[reason] = (shedByReason[reason] ?? 0) + 1
    liveStats.recordShed()
  }
  const onShed = (message: unknown) => { recordShed((message as ShedMessage).reason) }
  const onAdmission = (message: unknown) => { queueWait.observe((message as AdmissionMessage).waitedMs / SECONDS) }
  const subscriptions = [[channels.request, onRequest], [channels.merge, onMerge], [channels.shed, onShed], [channels.admission, onAdmission]] as const
  for (const [channel, listener] of subscriptions) channel.subscribe(listener)

  return {
    registry,
    /** One HTTP request answered, on any route. */
    recordHttp (method: string, route: string, statusCode: number, seconds: number) {
      requestDuration.observe({ method, route, status_code: statusCode }, seconds)
    },
    /** The latest once-a-second snapshot for the live dashboard. */
    snapshot: (): DashboardSnapshot => subscribers.size > 0 ? latest : buildSnapshot(),
    /** Calls `listener` with every new snapshot, once a second, until the returned function is called. */
    subscribe (listener: (snapshot: DashboardSnapshot) => void) {
      subscribers.add(listener)
      return () => { subscribers.delete(listener) }
    },
    stop () {
      clearInterval(ticker)
      for (const [channel, listener] of subscriptions) channel.unsubscribe(listener)
      subscribers.clear()
    }
  }
}

export type Telemetry = ReturnType<typeof createTelemetry>

/**
 * Merge wait and run times of the last second and the one before, for the dashboard's p99 and busy-thread estimate
 * (the Prometheus histograms above keep everything for rate() queries).
 */
function createRecentSamples () {
  let current: number[] = []
  let previous: number[] = []
  return {
    add (ms: number) { if (current.length < 10_000) current.push(ms) },
    roll () { previous = current; current = [] },
    p99 (): number | null {
      if (previous.length === 0) return null
      const sorted = [...previous].sort((left, right) => left - right)
      return Math.round(percentile(sorted, 0.99) * 10) / 10
    },
    /** Average threads busy over the last second: total run time divided by one second. */
    busy: () => Math.round((previous.reduce((sum, ms) => sum + ms, 0) / SECONDS) * 100) / 100
  }
}
