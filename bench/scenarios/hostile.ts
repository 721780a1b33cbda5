import { setTimeout as sleep } from 'node:timers/promises'
import { BENCH_PORTS, type BenchContext, type ScenarioResult } from '../lib/context.js'
import { settle } from '../lib/gateway.js'
import { aggregatePaths, runLoad } from '../lib/load.js'
import { watchPeakRss } from '../lib/processes.js'
import { formatSpread, spread } from '../lib/stats.js'
import type { LoadResult } from '../load-generator.js'

// 8. Hostile upstream: one optional upstream (recommendations) answers with a body built to hurt, in turn
//   nested        ≈8 MB of nested arrays (deep recursion in a parser, a large allocation)
//   overflow      numbers that overflow in the merge (Infinity, NaN where a finite score is expected)
//   header-flood  10,000 response headers
// while normal traffic runs at a modest fixed rate against the same gateway. Hostile requests (their own users,
// sent one at a time, measured here) must come back 200 and partial (recommendations from a fallback) within the
// deadline plus a margin; the normal requests' success rate and the gateway's peak RSS growth show what the hostile
// body cost everyone else. The mock's mode applies to every call it answers, so the normal traffic's recommendations
// are hostile too: what it measures is that the other requests keep being served.

const MODES: Array<{ mode: string, settings: Record<string, unknown>, label: string }> = [
  { mode: 'nested', settings: { hostileBytes: 8_000_000 }, label: 'nested arrays, ≈8 MB' },
  { mode: 'overflow', settings: {}, label: 'overflowing numbers' },
  { mode: 'header-flood', settings: {}, label: '10,000 headers' }
]
const DEADLINE_MS = 300
const MARGIN_MS = 200
const NORMAL_SHARE = 0.3
const CAPACITY_CONNECTIONS = 16
const HOSTILE_INTERVAL_MS = 250
const MiB = 1024 * 1024

interface HostileResponse { status: number | null, ms: number, complete: boolean | null, recommendations: string | null }
interface ModeRun { mode: string, hostile: HostileResponse[], normal: LoadResult, rssBefore: number | null, peakRss: number | null }

/** Sends one hostile request after another, `intervalMs` apart, until `durationSeconds` have passed. */
async function probe (origin: string, durationSeconds: number, intervalMs: number, round: number): Promise<HostileResponse[]> {
  const responses: HostileResponse[] = []
  const endAt = performance.now() + durationSeconds * 1000
  for (let index = 0; performance.now() < endAt; index++) {
    const startedAt = performance.now()
    try {
      const response = await fetch(`${origin}/aggregate/hostile-${round}-${index}`, { signal: AbortSignal.timeout(10_000) })
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
  // The hostile modes are new in the mocks: without them /__control answers 400, and nothing here can be measured.
  for (const { mode, settings } of MODES) {
    const response = await fetch(`${recommendationsMock.origin}/__control`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mode, ...settings }) })
    const text = await response.text()
    await fetch(`${recommendationsMock.origin}/__control`, { method: 'DELETE' })
    if (!response.ok) {
      throw new Error(`hostile: the mocks do not support ${JSON.stringify({ mode, ...settings })} yet (PUT /__control answered ${response.status}: ${text.slice(0, 300)}). This scenario needs the hostile mock modes nested (with the numeric setting hostileBytes), overflow and header-flood.`)
    }
  }

  const normalUpstreams = { latencyMs: 20, jitterMs: 5 }
  const modeSeconds = context.quick ? context.durationSeconds : 6
  await context.mocks.configure(normalUpstreams)
  const gateway = await context.startGateway(BENCH_PORTS.a, { AGGREGATE_DEADLINE_MS: String(DEADLINE_MS) })
  const paths = aggregatePaths()
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
        await context.mocks.configure(normalUpstreams, { recommendations: { mode, ...settings } as object })
        const rssBefore = gateway.rssBytes()
        const stopWatching = watchPeakRss(gateway)
        const [normal, hostileResponses] = await Promise.all([
          runLoad({ origin: gateway.origin, paths, connections: Math.min(100, normalRate), overallRate: normalRate, durationSeconds: modeSeconds, timeoutSeconds: 10 }),
          probe(gateway.origin, modeSeconds, HOSTILE_INTERVAL_MS, round)
        ])
        const peakRss = stopWatching()
        runs.push({ mode, hostile: hostileResponses, normal, rssBefore, peakRss })
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
    const normalOk = (run: ModeRun) => percent(run.normal.byStatus['200'] ?? 0, run.normal.responses + run.normal.errors + run.normal.timeouts)
    const rssGrowth = (run: ModeRun) => run.peakRss === null || run.rssBefore === null ? null : (run.peakRss - run.rssBefore) / MiB
    const metrics = MODES.map(({ mode, label }) => ({
      mode,
      label,
      hostileOk: of(mode, (run) => percent(hostileOk(run), run.hostile.length)),
      hostileP50: of(mode, p50Ms),
      hostileMax: of(mode, maxMs),
      statuses: statuses(mode),
      normalOk: of(mode, normalOk),
      normalP99: of(mode, (run) => run.normal.accepted.p99Ms),
      rssBefore: of(mode, (run) => run.rssBefore === null ? null : run.rssBefore / MiB),
      rssGrowth: of(mode, rssGrowth)
    }))
    const n = (value: { median: number | null }, digits = 0) => value.median === null ? '–' : value.median.toFixed(digits)
    const worstMax = Math.max(...metrics.map((metric) => metric.hostileMax.max ?? Number.POSITIVE_INFINITY))
    const allWithin = metrics.every((metric) => metric.hostileOk.min === 100)

    return {
      id: 'hostile',
      title: '8. Hostile upstream: nested, overflowing and header-flooded bodies from an optional upstream',
      finding: `${allWithin ? 'Every' : 'Not every'} hostile request came back 200 and partial within ${limitMs} ms (slowest ${Number.isFinite(worstMax) ? Math.round(worstMax) : '–'} ms); ${metrics.map((metric) => `${metric.mode}: ${n(metric.hostileOk)}% of hostile requests in time, ${n(metric.normalOk, 1)}% of normal requests served, peak RSS +${n(metric.rssGrowth, 1)} MiB`).join('; ')}.`,
      setup: `Recommendations (optional, fallback: default) set in turn to each hostile mock mode (${MODES.map((mode) => JSON.stringify({ mode: mode.mode, ...mode.settings })).join(', ')}); the other upstreams at 20 ± 5 ms. Normal traffic: ${normalRate} requests/s (${Math.round(NORMAL_SHARE * 100)}% of the ${capacity}/s measured closed-loop with ${CAPACITY_CONNECTIONS} connections before), fixed rate, 200 users, from a load-generator process; the mock's mode applies to every call, so their recommendations are hostile too. Hostile requests: one at a time every ${HOSTILE_INTERVAL_MS} ms, each for a new user, timed from this process; in time = 200, x-aggregate-complete: false, within AGGREGATE_DEADLINE_MS (${DEADLINE_MS}) + ${MARGIN_MS} ms. RSS: the gateway process, sampled every 200 ms; growth = peak during the run − RSS just before. ${modeSeconds} s per mode, ${context.rounds} round(s), mode order reversed from round to round. Gateway defaults otherwise.`,
      table: {
        headers: ['hostile body', 'hostile: 200 partial in time', 'hostile p50 (ms)', 'hostile max (ms)', 'hostile outcomes (all rounds)', 'normal requests served (200)', 'normal p99 (ms)', 'RSS before (MiB)', 'peak RSS growth (MiB)'],
        rows: metrics.map((metric) => [
          `${metric.mode} (${metric.label})`, formatSpread(metric.hostileOk, 0, '%'), formatSpread(metric.hostileP50, 0), formatSpread(metric.hostileMax, 0), metric.statuses,
          formatSpread(metric.normalOk, 1, '%'), formatSpread(metric.normalP99, 0), formatSpread(metric.rssBefore, 0), formatSpread(metric.rssGrowth, 1)
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
