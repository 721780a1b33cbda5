import { alternate, BENCH_PORTS, type BenchContext, type ScenarioResult } from '../lib/context.js'
import { aggregatePaths, runLoad } from '../lib/load.js'
import type { Service } from '../lib/processes.js'
import { formatSpread, ratio, spread } from '../lib/stats.js'

// 7. The gateway against the floor: the least aggregator that does the same work (bench/baselines/floor.ts: node:http,
// an undici Pool per upstream, Promise.all, the registry's section modules inline, JSON.stringify). Three ratios,
// gateway ÷ floor:
//   CPU per aggregate   at saturation (closed loop, instant upstreams, payload scale 1): CPU seconds of the measured
//                       process from /proc, all threads, divided by the 200s it served
//   added latency       at one connection: p50 minus the p50 of one direct upstream call in the same round
//   overlap             p50 over the slowest upstream, upstreams at 40/80/120/60/100 ms
// What the ratios price is everything the gateway does that the floor does not: deadlines, bulkheads, the structural
// budget on bodies, fallbacks and the stale cache, the worker-pool hand-off, admission, logging and metrics.

const SATURATING_CONNECTIONS = 32
const OVERLAP_CONNECTIONS = 10
const LATENCY_MS = { profile: 40, orders: 80, recommendations: 120, inventory: 60, loyalty: 100 }
const SLOWEST_MS = Math.max(...Object.values(LATENCY_MS))

export async function cpuPerAggregate (context: BenchContext): Promise<ScenarioResult> {
  // Shorter runs than the other scenarios' 8 s: one connection gives thousands of samples in 5 s, and CPU per 200 is
  // a ratio of two large counts by 6 s.
  const saturationSeconds = context.quick ? context.durationSeconds : 6
  const latencySeconds = context.quick ? context.durationSeconds : 5
  await context.mocks.configure({ latencyMs: 0, jitterMs: 0, payloadScale: 1 })
  const gateway = await context.startGateway(BENCH_PORTS.a)
  const floor = await context.startBaseline('floorBaseline', BENCH_PORTS.b).catch(async (error: unknown) => {
    await gateway.stop()
    throw error
  })
  const recommendations = context.mocks.services[2]!
  const paths = aggregatePaths()
  const directPaths = Array.from({ length: 200 }, (_, index) => `/users/bench-user-${index}/recommendations`)
  try {
    const saturate = (service: Service) => async () => {
      const cpuBefore = service.cpuSeconds()
      const result = await runLoad({ origin: service.origin, paths, connections: SATURATING_CONNECTIONS, durationSeconds: saturationSeconds })
      const cpuAfter = service.cpuSeconds()
      const served = result.byStatus['200'] ?? 0
      const cpuSeconds = cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore
      return { ...result, served, cpuSeconds, cpuMsPerAggregate: cpuSeconds === null || served === 0 ? null : (1000 * cpuSeconds) / served }
    }
    const oneConnection = (service: Service, servicePaths: string[]) => () =>
      runLoad({ origin: service.origin, paths: servicePaths, connections: 1, durationSeconds: latencySeconds })
    const overlapped = (service: Service) => () =>
      runLoad({ origin: service.origin, paths, connections: OVERLAP_CONNECTIONS, durationSeconds: latencySeconds })

    // Warm-up: JIT, connection pools, merge threads.
    await Promise.all([gateway, floor].map((service) => runLoad({ origin: service.origin, paths, connections: SATURATING_CONNECTIONS, durationSeconds: Math.min(4, saturationSeconds) })))
    context.log('saturation')
    const saturation = await alternate(context.rounds, [
      { name: 'gateway', measure: saturate(gateway) },
      { name: 'floor', measure: saturate(floor) }
    ])
    context.log('one connection')
    const latency = await alternate(context.rounds, [
      { name: 'gateway', measure: oneConnection(gateway, paths) },
      { name: 'floor', measure: oneConnection(floor, paths) },
      { name: 'upstream', measure: oneConnection(recommendations, directPaths) }
    ])
    context.log(`overlap, upstreams at ${Object.values(LATENCY_MS).join('/')} ms`)
    await context.mocks.configure({ jitterMs: 0, payloadScale: 1 }, Object.fromEntries(Object.entries(LATENCY_MS).map(([name, latencyMs]) => [name, { latencyMs }])))
    const overlap = await alternate(context.rounds, [
      { name: 'gateway', measure: overlapped(gateway) },
      { name: 'floor', measure: overlapped(floor) }
    ])

    type Name = 'gateway' | 'floor'
    const cpuMs = (name: Name) => saturation[name]!.map((run) => run.cpuMsPerAggregate)
    const rps = (name: Name) => spread(saturation[name]!.map((run) => run.served / run.durationSeconds))
    const shedPerSecond = (name: Name) => spread(saturation[name]!.map((run) => (run.byStatus['503'] ?? 0) / run.durationSeconds))
    const cores = (name: Name) => spread(saturation[name]!.map((run) => run.cpuSeconds === null ? null : run.cpuSeconds / run.durationSeconds))
    const p50Micros = (name: string) => latency[name]!.map((run) => run.accepted.p50Ms === null ? null : run.accepted.p50Ms * 1000)
    // Per round: p50 minus one direct upstream call's p50 in the same round.
    const addedMicros = (name: Name) => latency[name]!.map((run, round) => {
      const direct = latency.upstream![round]!.accepted.p50Ms
      return run.accepted.p50Ms === null || direct === null ? null : (run.accepted.p50Ms - direct) * 1000
    })
    const overlapP50 = (name: Name) => overlap[name]!.map((run) => run.accepted.p50Ms)
    const overlapRatio = (name: Name) => overlapP50(name).map((p50) => ratio(p50, SLOWEST_MS, 3))
    // Gateway ÷ floor, round by round (the two were measured next to each other in each round).
    const perRound = (gatewayValues: Array<number | null>, floorValues: Array<number | null>) => spread(gatewayValues.map((value, round) => ratio(value, floorValues[round] ?? null, 3)))
    const ratios = {
      cpu: perRound(cpuMs('gateway'), cpuMs('floor')),
      added: perRound(addedMicros('gateway'), addedMicros('floor')),
      overlap: perRound(overlapRatio('gateway'), overlapRatio('floor'))
    }
    const row = (label: string, name: Name) => [
      label, formatSpread(spread(cpuMs(name)), 2), formatSpread(rps(name), 0), formatSpread(shedPerSecond(name), 0), formatSpread(cores(name), 2),
      formatSpread(spread(p50Micros(name)), 0), formatSpread(spread(addedMicros(name)), 0),
      formatSpread(spread(overlapP50(name)), 1), formatSpread(spread(overlapRatio(name)), 3)
    ]
    const n = (value: { median: number | null }, digits = 2) => value.median === null ? '–' : value.median.toFixed(digits)

    return {
      id: 'cpu-per-aggregate',
      title: '7. The gateway against the floor: CPU per aggregate, added latency, overlap',
      finding: `Against the minimal aggregator doing the same work (node:http, undici, Promise.all, the same section modules inline), the gateway spends ${n(ratios.cpu)}× the CPU per aggregate (${n(spread(cpuMs('gateway')))} ms vs ${n(spread(cpuMs('floor')))} ms, all threads), adds ${n(ratios.added)}× the latency over one direct upstream call at p50 (${n(spread(addedMicros('gateway')), 0)} µs vs ${n(spread(addedMicros('floor')), 0)} µs), and answers in ${n(spread(overlapRatio('gateway')), 3)}× the slowest upstream against the floor's ${n(spread(overlapRatio('floor')), 3)}× (${n(ratios.overlap, 3)}× the floor's ratio).`,
      setup: `CPU: closed loop, ${SATURATING_CONNECTIONS} connections, ${saturationSeconds} s per round, upstreams answering at once, payload scale 1; CPU seconds (user + system, all threads) of the measured process from /proc/<pid>/stat over the run, divided by the 200s it served. Added latency: 1 connection, ${latencySeconds} s per round, p50 minus the p50 of a direct GET on the recommendations mock in the same round. Overlap: ${OVERLAP_CONNECTIONS} connections, ${latencySeconds} s per round, upstream latencies ${JSON.stringify(LATENCY_MS)} ms, p50 ÷ ${SLOWEST_MS} ms. ${context.rounds} round(s) each, alternating in ABBA order; ratios are gateway ÷ floor per round. The gateway runs with its defaults (admission on: CPU spent on 503s counts against the 200s it served, as it would in production); the floor is bench/baselines/floor.ts.`,
      table: {
        headers: ['', 'CPU per aggregate (ms)', 'aggregates/s at saturation', '503s/s at saturation', 'CPU cores used', 'p50, 1 connection (µs)', 'added over one upstream call, p50 (µs)', 'p50, upstreams 40–120 ms (ms)', 'p50 / slowest upstream'],
        rows: [
          row('gateway', 'gateway'),
          row('floor (node:http + undici + Promise.all + same sections)', 'floor'),
          ['one upstream call, direct', '', '', '', '', formatSpread(spread(p50Micros('upstream')), 0), '', '', ''],
          ['gateway ÷ floor', formatSpread(ratios.cpu, 2), '', '', '', '', formatSpread(ratios.added, 2), '', formatSpread(ratios.overlap, 3)]
        ]
      },
      chart: {
        title: 'Gateway ÷ floor (1 = as cheap as the minimal aggregator)',
        unit: 'gateway ÷ floor',
        groups: ['CPU per aggregate', 'added latency, p50', 'p50 / slowest upstream'],
        series: [{ name: 'gateway ÷ floor', values: [ratios.cpu, ratios.added, ratios.overlap] }],
        references: [{ label: 'floor', value: 1 }]
      },
      data: { latencies: LATENCY_MS, saturation, latency, overlap, ratios }
    }
  } finally {
    await Promise.all([gateway.stop(), floor.stop()])
  }
}
