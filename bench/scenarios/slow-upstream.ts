import { alternate, BENCH_PORTS, type BenchContext, type ScenarioResult } from '../lib/context.js'
import { aggregatePaths, runLoad } from '../lib/load.js'
import { watchPeakRss, type Service } from '../lib/processes.js'
import { formatSpread, spread } from '../lib/stats.js'

// 5. Bounded fan-out under a slow upstream: recommendations at 10x its usual latency, a fixed offered rate, against the
// gateway (deadline, per-call timeout, bulkhead, fallback) and the naive Promise.all baseline (none of those).

const LATENCY_MS = { profile: 40, orders: 60, recommendations: 1000, inventory: 50, loyalty: 70 }
const RATE = 50
const CONNECTIONS = 100
const DEADLINE_MS = 300
const MiB = 1024 * 1024

export async function slowUpstream (context: BenchContext): Promise<ScenarioResult> {
  await context.mocks.configure({ jitterMs: 0 }, Object.fromEntries(Object.entries(LATENCY_MS).map(([name, latencyMs]) => [name, { latencyMs }])))
  const gateway = await context.startGateway(BENCH_PORTS.a)
  const naive = await context.startBaseline('naiveBaseline', BENCH_PORTS.b)
  const paths = aggregatePaths()
  try {
    const measure = (service: Service) => async () => {
      await context.mocks.resetStats()
      const rssBefore = service.rssBytes()
      const stopWatching = watchPeakRss(service)
      const result = await runLoad({ origin: service.origin, paths, connections: CONNECTIONS, overallRate: RATE, durationSeconds: context.durationSeconds, timeoutSeconds: 10 })
      const peakRss = stopWatching()
      const [recommendations, orders] = await Promise.all([context.mocks.stats('recommendations'), context.mocks.stats('orders')])
      return { ...result, rssBefore, rssAfter: service.rssBytes(), peakRss, slowInFlight: recommendations.maxInFlight, slowAborted: recommendations.aborted, otherInFlight: orders.maxInFlight }
    }
    await Promise.all([measure(gateway)(), measure(naive)()])
    const results = await alternate(context.rounds, [
      { name: 'gateway', measure: measure(gateway) },
      { name: 'naive', measure: measure(naive) }
    ])
    type Run = typeof results[string][number]
    const of = (name: string, pick: (run: Run) => number | null) => spread(results[name]!.map(pick))
    const row = (label: string, name: string) => [
      label,
      formatSpread(of(name, (run) => run.accepted.p50Ms), 0), formatSpread(of(name, (run) => run.accepted.p99Ms), 0),
      formatSpread(of(name, (run) => run.acceptedThroughput), 1),
      formatSpread(of(name, (run) => run.slowInFlight), 0), formatSpread(of(name, (run) => run.otherInFlight), 0),
      formatSpread(of(name, (run) => run.peakRss === null ? null : run.peakRss / MiB), 0),
      formatSpread(of(name, (run) => run.rssAfter === null || run.rssBefore === null ? null : (run.rssAfter - run.rssBefore) / MiB), 1)
    ]
    const p99 = { gateway: of('gateway', (run) => run.accepted.p99Ms), naive: of('naive', (run) => run.accepted.p99Ms) }
    const inFlight = { gateway: of('gateway', (run) => run.slowInFlight), naive: of('naive', (run) => run.slowInFlight) }
    return {
      id: 'slow-upstream',
      title: '5. Bounded fan-out under a slow upstream: gateway vs naive Promise.all',
      finding: `With recommendations at ${LATENCY_MS.recommendations} ms (10× normal) and ${RATE} requests/s offered, the gateway answers within its ${DEADLINE_MS} ms deadline (p99 ${Math.round(p99.gateway.median ?? 0)} ms, recommendations from a fallback) and never has more than ${inFlight.gateway.max} calls waiting on the slow upstream; the naive baseline waits for it every time (p99 ${Math.round(p99.naive.median ?? 0)} ms) with up to ${inFlight.naive.max} calls piled on it.`,
      setup: `Fixed rate ${RATE}/s (open loop, coordinated-omission corrected), ${CONNECTIONS} connections, ${context.durationSeconds} s per round, ${context.rounds} round(s) each, alternating; upstream latencies ${JSON.stringify(LATENCY_MS)} ms. In flight: the mocks' maxInFlight per round. RSS of the measured process.`,
      table: {
        headers: ['', 'p50 (ms)', 'p99 (ms)', 'requests/s', 'max calls in flight, slow upstream', 'max in flight, orders', 'peak RSS (MiB)', 'RSS change (MiB)'],
        rows: [row('gateway', 'gateway'), row('naive Promise.all', 'naive')]
      },
      chart: {
        title: 'Slow upstream (1 s): latency with recommendations 10× slower',
        unit: 'ms',
        groups: ['p50', 'p99'],
        series: [
          { name: 'gateway', values: [of('gateway', (run) => run.accepted.p50Ms), p99.gateway] },
          { name: 'naive Promise.all', values: [of('naive', (run) => run.accepted.p50Ms), p99.naive] }
        ],
        references: [{ label: `deadline ${DEADLINE_MS} ms`, value: DEADLINE_MS }, { label: `slow upstream ${LATENCY_MS.recommendations} ms`, value: LATENCY_MS.recommendations }]
      },
      data: results
    }
  } finally {
    await Promise.all([gateway.stop(), naive.stop()])
  }
}
