import { setTimeout as sleep } from 'node:timers/promises'
import { BENCH_PORTS, type BenchContext, type Gateway, type ScenarioResult } from '../lib/context.js'
import { settle } from '../lib/gateway.js'
import { aggregatePaths, runLoad } from '../lib/load.js'
import { watchPeakRss } from '../lib/processes.js'
import { formatSpread, spread } from '../lib/stats.js'
import type { LoadResult } from '../load-generator.js'

// 8. Hostile upstream: one optional upstream (recommendations) answers with a body built to hurt, in turn
//   nested        nested arrays up to just under the gateway's recommendations byte budget (4 MiB): all of it is read,
//                 and millions of values stand between the gateway and a parse
//   overflow      numbers that overflow in the merge (Infinity, NaN where a finite score is expected)
//   header-flood  10,000 response headers
// to the hostile users only (the mock's modeUserPrefix: user ids starting with HOSTILE_PREFIX), while normal traffic,
// for other users whose recommendations stay normal, runs at a modest fixed rate against the same gateway. Hostile
// requests (sent one at a time, measured here) must come back 200 and partial (recommendations from a fallback) within
// the deadline plus a margin; the normal requests must keep succeeding, 200 and complete (counted by the gateway's
// aggregate_responses_total, less the hostile requests), and the gateway's peak RSS growth shows what the hostile
// bodies cost.

const MiB = 1024 * 1024
// The gateway cuts recommendations bodies over 4 MiB (RECOMMENDATIONS_MAX_BODY_BYTES): just under it, the body is read
// in full and has to be judged on its structure.
const NESTED_BYTES = 4 * MiB - 4096
const MODES: Array<{ mode: string, settings: Record<string, unknown>, label: string }> = [
  { mode: 'nested', settings: { hostileBytes: NESTED_BYTES }, label: 'nested arrays, 4 MiB − 4 KiB' },
  { mode: 'overflow', settings: {}, label: 'overflowing numbers' },
  { mode: 'header-flood', settings: {}, label: '10,000 headers' }
]
const DEADLINE_MS = 300
const MARGIN_MS = 200
const NORMAL_SHARE = 0.3
const CAPACITY_CONNECTIONS = 16
const HOSTILE_INTERVAL_MS = 250
// Only these users get the hostile mode; the normal traffic's users (aggregatePaths: bench-user-<n>) do not.
const HOSTILE_PREFIX = 'hostile-'
const NORMAL_USERS = 'bench-user'

interface HostileResponse { status: number | null, ms: number, complete: boolean | null, recommendations: string | null }
interface ModeRun {
  mode: string
  hostile: HostileResponse[]
  normal: LoadResult
  /** Complete 200s the gateway counted for the normal traffic (all complete ones less the hostile ones); null if unread. */
  normalComplete: number | null
  rssBefore: number | null
  peakRss: number | null
}

/** aggregate_responses_total by result (complete, partial, failed), from /metrics on the gateway's observability port. */
async function aggregateResults (gateway: Gateway): Promise<Record<string, number> | null> {
  try {
    const response = await fetch(`${gateway.metricsOrigin}/metrics`, { signal: AbortSignal.timeout(5000) })
    if (!response.ok) return null
    const text = await response.text()
    return Object.fromEntries([...text.matchAll(/^aggregate_responses_total\{result="([^"]+)"\} (\d+)/gm)].map(([, result, count]) => [result!, Number(count)]))
  } catch {
    return null
  }
}

/** Sends one hostile request after another, `intervalMs` apart, until `durationSeconds` have passed. */
async function probe (origin: string, durationSeconds: number, intervalMs: number, round: number): Promise<HostileResponse[]> {
  const responses: HostileResponse[] = []
  const endAt = performance.now() + durationSeconds * 1000
  for (let index = 0; performance.now() < endAt; index++) {
    const startedAt = performance.now()
    try {
      const response = await fetch(`${origin}/aggregate/${HOSTILE_PREFIX}${round}-${index}`, { signal: AbortSignal.timeout(10_000) })
      const text = await response.text()
      const ms = performance.now() - startedAt
      let recommendations: string | null = null
      try {
        recommendations = (JSON.parse(text) as { meta?: { upstreams?: { recommendations?: { status?: string, fallback?: string } } } }).meta?.upstreams?.recommendations?.status ?? null
      } catch {}
      const header = response.headers.get('x-aggregate-complete')
      responses.push({ status: response.status, ms, complete: header === null ? null : header === 'true', recommendations })
    } catch {
      responses.push({ status: null, ms: performance.now() - startedAt, complete: null, recommendations: null })
    }
    await sleep(Math.max(0, intervalMs - (performance.now() - startedAt)))
  }
  return responses
}

export async function hostile (context: BenchContext): Promise<ScenarioResult> {
  const recommendationsMock = context.mocks.services[2]!
  if (aggregatePaths(1, NORMAL_USERS)[0]!.startsWith(`/aggregate/${HOSTILE_PREFIX}`)) throw new Error('hostile: the normal users would get the hostile mode too')
  // The hostile modes and modeUserPrefix are new in the mocks: without them /__control answers 400, and nothing here
  // can be measured.
  for (const { mode, settings } of MODES) {
    const response = await fetch(`${recommendationsMock.origin}/__control`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mode, modeUserPrefix: HOSTILE_PREFIX, ...settings }) })
    const text = await response.text()
    await fetch(`${recommendationsMock.origin}/__control`, { method: 'DELETE' })
    if (!response.ok) {
      throw new Error(`hostile: the mocks do not support ${JSON.stringify({ mode, modeUserPrefix: HOSTILE_PREFIX, ...settings })} yet (PUT /__control answered ${response.status}: ${text.slice(0, 300)}). This scenario needs the hostile mock modes nested (with the numeric setting hostileBytes), overflow and header-flood, and the setting modeUserPrefix.`)
    }
  }

  const normalUpstreams = { latencyMs: 20, jitterMs: 5 }
  const modeSeconds = context.quick ? context.durationSeconds : 6
  await context.mocks.configure(normalUpstreams)
  const gateway = await context.startGateway(BENCH_PORTS.a, { AGGREGATE_DEADLINE_MS: String(DEADLINE_MS) })
  const paths = aggregatePaths(200, NORMAL_USERS)
  try {
    await runLoad({ origin: gateway.origin, paths, connections: CAPACITY_CONNECTIONS, durationSeconds: Math.min(4, context.durationSeconds) })
    await settle(gateway)
    const capacityRun = await runLoad({ origin: gateway.origin, paths, connections: CAPACITY_CONNECTIONS, durationSeconds: context.durationSeconds })
    const capacity = Math.max(10, Math.round((capacityRun.byStatus['200'] ?? 0) / capacityRun.durationSeconds))
    const normalRate = Math.max(5, Math.round(NORMAL_SHARE * capacity))
    context.log(`capacity (closed loop, ${CAPACITY_CONNECTIONS} connections): ${capacity} requests/s; normal traffic at ${normalRate}/s`)
    await settle(gateway)

    const runs: ModeRun[] = []
    for (let round = 0; round < context.rounds; round++) {
      for (const { mode, settings } of round % 2 === 0 ? MODES : [...MODES].reverse()) {
        context.log(`round ${round + 1}: ${mode}`)
        await context.mocks.configure(normalUpstreams, { recommendations: { mode, modeUserPrefix: HOSTILE_PREFIX, ...settings } as object })
        const resultsBefore = await aggregateResults(gateway)
        const rssBefore = gateway.rssBytes()
        const stopWatching = watchPeakRss(gateway)
        const [normal, hostileResponses] = await Promise.all([
          runLoad({ origin: gateway.origin, paths, connections: Math.min(100, normalRate), overallRate: normalRate, durationSeconds: modeSeconds, timeoutSeconds: 10 }),
          probe(gateway.origin, modeSeconds, HOSTILE_INTERVAL_MS, round)
        ])
        const peakRss = stopWatching()
        // Requests still in the gateway when the clients stopped finish (or give up) within the deadline.
        await sleep(DEADLINE_MS + MARGIN_MS)
        const resultsAfter = await aggregateResults(gateway)
        const hostileComplete = hostileResponses.filter((response) => response.status === 200 && response.complete === true).length
        const normalComplete = resultsBefore === null || resultsAfter === null
          ? null
          // At most the 200s the load generator saw: a request it dropped at the end may still have been answered.
          : Math.max(0, Math.min(normal.byStatus['200'] ?? 0, (resultsAfter.complete ?? 0) - (resultsBefore.complete ?? 0) - hostileComplete))
        runs.push({ mode, hostile: hostileResponses, normal, normalComplete, rssBefore, peakRss })
        await context.mocks.configure(normalUpstreams)
        await settle(gateway)
      }
    }

    const limitMs = DEADLINE_MS + MARGIN_MS
    const of = (mode: string, pick: (run: ModeRun) => number | null) => spread(runs.filter((run) => run.mode === mode).map(pick))
    const percent = (part: number, whole: number) => whole === 0 ? null : (100 * part) / whole
    const hostileOk = (run: ModeRun) => run.hostile.filter((response) => response.status === 200 && response.complete === false && response.ms <= limitMs).length
    const maxMs = (run: ModeRun) => run.hostile.length === 0 ? null : Math.max(...run.hostile.map((response) => response.ms))
    const p50Ms = (run: ModeRun) => {
      const sorted = run.hostile.map((response) => response.ms).sort((left, right) => left - right)
      return sorted.length === 0 ? null : sorted[Math.floor(sorted.length / 2)]!
    }
    const statuses = (mode: string) => {
      const counts: Record<string, number> = {}
      for (const run of runs.filter((candidate) => candidate.mode === mode)) {
        for (const response of run.hostile) {
          const key = response.status === null ? 'no response' : `${response.status}${response.status === 200 ? (response.complete ? ' complete' : ' partial') : ''}`
          counts[key] = (counts[key] ?? 0) + 1
        }
      }
      return Object.entries(counts).map(([key, count]) => `${key}: ${count}`).join(', ')
    }
    const normalSent = (run: ModeRun) => run.normal.responses + run.normal.errors + run.normal.timeouts
    const normalOk = (run: ModeRun) => percent(run.normal.byStatus['200'] ?? 0, normalSent(run))
    const normalComplete = (run: ModeRun) => run.normalComplete === null ? null : percent(run.normalComplete, normalSent(run))
    const rssGrowth = (run: ModeRun) => run.peakRss === null || run.rssBefore === null ? null : (run.peakRss - run.rssBefore) / MiB
    const metrics = MODES.map(({ mode, label }) => ({
      mode,
      label,
      hostileOk: of(mode, (run) => percent(hostileOk(run), run.hostile.length)),
      hostileP50: of(mode, p50Ms),
      hostileMax: of(mode, maxMs),
      statuses: statuses(mode),
      normalOk: of(mode, normalOk),
      normalComplete: of(mode, normalComplete),
      normalP99: of(mode, (run) => run.normal.accepted.p99Ms),
      rssBefore: of(mode, (run) => run.rssBefore === null ? null : run.rssBefore / MiB),
      rssGrowth: of(mode, rssGrowth)
    }))
    const n = (value: { median: number | null }, digits = 0) => value.median === null ? '–' : value.median.toFixed(digits)
    const worstMax = Math.max(...metrics.map((metric) => metric.hostileMax.max ?? Number.POSITIVE_INFINITY))
    const allWithin = metrics.every((metric) => metric.hostileOk.min === 100)
    const normalHeld = metrics.every((metric) => metric.normalComplete.min !== null && metric.normalComplete.min >= 95)

    return {
      id: 'hostile',
      title: '8. Hostile upstream: nested, overflowing and header-flooded bodies from an optional upstream',
      finding: `${allWithin ? 'Every' : 'Not every'} hostile request came back 200 and partial within ${limitMs} ms (slowest ${Number.isFinite(worstMax) ? Math.round(worstMax) : '–'} ms); normal requests ${normalHeld ? 'kept' : 'did not keep'} ≥ 95% 200 and complete in every run; ${metrics.map((metric) => `${metric.mode}: ${n(metric.hostileOk)}% of hostile requests in time, normal requests ${n(metric.normalComplete, 1)}% 200 and complete (${n(metric.normalOk, 1)}% 200), peak RSS +${n(metric.rssGrowth, 1)} MiB`).join('; ')}.`,
      setup: `Recommendations (optional, fallback: default) set in turn to each hostile mock mode for the users whose id starts with ${JSON.stringify(HOSTILE_PREFIX)} only (${MODES.map((mode) => JSON.stringify({ mode: mode.mode, modeUserPrefix: HOSTILE_PREFIX, ...mode.settings })).join(', ')}; ${NESTED_BYTES} bytes is just under the gateway's 4 MiB recommendations body limit); every other user's recommendations, and the other upstreams, at 20 ± 5 ms. Normal traffic: ${normalRate} requests/s (${Math.round(NORMAL_SHARE * 100)}% of the ${capacity}/s measured closed-loop with ${CAPACITY_CONNECTIONS} connections before), fixed rate, 200 users (${NORMAL_USERS}-<n>, all upstreams normal for them), from a load-generator process; success = 200 and complete (the gateway's aggregate_responses_total{result="complete"} over the run, less the hostile requests that came back complete, at most the load generator's 200s), and plain 200, out of all normal requests sent. Hostile requests: one at a time every ${HOSTILE_INTERVAL_MS} ms, each for a new user (${HOSTILE_PREFIX}<round>-<n>), timed from this process; in time = 200, x-aggregate-complete: false, within AGGREGATE_DEADLINE_MS (${DEADLINE_MS}) + ${MARGIN_MS} ms. RSS: the gateway process, sampled every 200 ms; growth = peak during the run − RSS just before. ${modeSeconds} s per mode, ${context.rounds} round(s), mode order reversed from round to round. Gateway defaults otherwise.`,
      table: {
        headers: ['hostile body', 'hostile: 200 partial in time', 'hostile p50 (ms)', 'hostile max (ms)', 'hostile outcomes (all rounds)', 'normal: 200 and complete', 'normal: 200', 'normal p99 (ms)', 'RSS before (MiB)', 'peak RSS growth (MiB)'],
        rows: metrics.map((metric) => [
          `${metric.mode} (${metric.label})`, formatSpread(metric.hostileOk, 0, '%'), formatSpread(metric.hostileP50, 0), formatSpread(metric.hostileMax, 0), metric.statuses,
          formatSpread(metric.normalComplete, 1, '%'), formatSpread(metric.normalOk, 1, '%'), formatSpread(metric.normalP99, 0), formatSpread(metric.rssBefore, 0), formatSpread(metric.rssGrowth, 1)
        ])
      },
      chart: {
        title: 'Hostile upstream: latency of hostile and normal requests',
        unit: 'ms',
        groups: metrics.map((metric) => metric.mode),
        series: [
          { name: 'hostile request, max', values: metrics.map((metric) => metric.hostileMax) },
          { name: 'hostile request, p50', values: metrics.map((metric) => metric.hostileP50) },
          { name: 'normal traffic, p99', values: metrics.map((metric) => metric.normalP99) }
        ],
        references: [{ label: `deadline + margin ${limitMs} ms`, value: limitMs }]
      },
      data: { capacity, normalRate, runs }
    }
  } finally {
    await context.mocks.configure(normalUpstreams).catch(() => {})
    await gateway.stop()
  }
}
