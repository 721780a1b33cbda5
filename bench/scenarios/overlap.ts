import { alternate, BENCH_PORTS, type BenchContext, type ScenarioResult } from '../lib/context.js'
import { aggregatePaths, runLoad } from '../lib/load.js'
import { formatSpread, ratio, spread } from '../lib/stats.js'

// 1. Overlap (concurrency): five upstreams at fixed latencies. The gateway starts all five calls at once; the serial
// baseline awaits each in turn. One event loop either way: the difference is only whether the waits overlap.

const LATENCY_MS = { profile: 40, orders: 80, recommendations: 120, inventory: 60, loyalty: 100 }
const SLOWEST_MS = Math.max(...Object.values(LATENCY_MS))
const SUM_MS = Object.values(LATENCY_MS).reduce((sum, latency) => sum + latency, 0)
const CONNECTIONS = 10

export async function overlap (context: BenchContext): Promise<ScenarioResult> {
  await context.mocks.configure({ jitterMs: 0 }, Object.fromEntries(Object.entries(LATENCY_MS).map(([name, latencyMs]) => [name, { latencyMs }])))
  const gateway = await context.startGateway(BENCH_PORTS.a)
  const serial = await context.startBaseline('serialBaseline', BENCH_PORTS.b)
  try {
    const load = (origin: string) => () => runLoad({ origin, paths: aggregatePaths(), connections: CONNECTIONS, durationSeconds: context.durationSeconds })
    await Promise.all([load(gateway.origin)(), load(serial.origin)()])
    const results = await alternate(context.rounds, [
      { name: 'gateway', measure: load(gateway.origin) },
      { name: 'serial', measure: load(serial.origin) }
    ])
    const metric = (name: string, pick: (result: typeof results[string][number]) => number | null) => spread(results[name]!.map(pick))
    const p50 = { gateway: metric('gateway', (result) => result.accepted.p50Ms), serial: metric('serial', (result) => result.accepted.p50Ms) }
    const p99 = { gateway: metric('gateway', (result) => result.accepted.p99Ms), serial: metric('serial', (result) => result.accepted.p99Ms) }
    const throughput = { gateway: metric('gateway', (result) => result.acceptedThroughput), serial: metric('serial', (result) => result.acceptedThroughput) }
    const gatewayRatio = ratio(p50.gateway.median, SLOWEST_MS)
    const serialRatio = ratio(p50.serial.median, SLOWEST_MS)
    return {
      id: 'overlap',
      title: '1. Overlap (concurrency): gateway vs serial baseline',
      finding: `With upstreams at ${Object.values(LATENCY_MS).join(', ')} ms, the gateway answers in ${gatewayRatio}× the slowest upstream (the physical limit is 1.0), the serial baseline in ${serialRatio}× (${ratio(p50.serial.median, SUM_MS)}× their sum): one thread, five waits overlapped instead of added.`,
      setup: `${CONNECTIONS} connections, closed loop, ${context.durationSeconds} s per round, ${context.rounds} round(s) each, alternating; upstream latencies ${JSON.stringify(LATENCY_MS)} ms, no jitter; 200 distinct users.`,
      table: {
        headers: ['', 'p50 (ms)', 'p99 (ms)', 'requests/s', 'p50 / slowest upstream'],
        rows: [
          ['gateway', formatSpread(p50.gateway), formatSpread(p99.gateway), formatSpread(throughput.gateway), String(gatewayRatio)],
          ['serial baseline', formatSpread(p50.serial), formatSpread(p99.serial), formatSpread(throughput.serial), String(serialRatio)]
        ]
      },
      chart: {
        title: 'Overlap: latency with five upstreams of 40–120 ms',
        unit: 'ms',
        groups: ['p50', 'p99'],
        series: [{ name: 'gateway (concurrent)', values: [p50.gateway, p99.gateway] }, { name: 'serial baseline', values: [p50.serial, p99.serial] }],
        references: [{ label: `slowest upstream ${SLOWEST_MS} ms`, value: SLOWEST_MS }, { label: `sum of upstreams ${SUM_MS} ms`, value: SUM_MS }]
      },
      data: { latencies: LATENCY_MS, results }
    }
  } finally {
    await Promise.all([gateway.stop(), serial.stop()])
  }
}
