import { alternate, BENCH_PORTS, type BenchContext, type Gateway, type ScenarioResult } from '../lib/context.js'
import { shedCounts, settle } from '../lib/gateway.js'
import { aggregatePaths, runLoad } from '../lib/load.js'
import { watchPeakRss, type Service } from '../lib/processes.js'
import { formatSpread, spread, type Spread } from '../lib/stats.js'

// 4. Shedding (backpressure): first the capacity, measured closed-loop; then a fixed offered rate of 1x, 2x and 4x
// that capacity (open loop, coordinated-omission corrected), against the same gateway with load shedding on and off,
// and against the naive baseline, which has no bound at all, to show what the bounded queues do on their own.

const LEVELS = [1, 2, 4]
// More connections cost the load generator CPU that the gateway then lacks on a small machine.
const MAX_CONNECTIONS = 500
const CAPACITY_CONNECTIONS = 16
const MiB = 1024 * 1024

export async function shedding (context: BenchContext): Promise<ScenarioResult> {
  await context.mocks.configure({ latencyMs: 20, jitterMs: 5 })
  const on = await context.startGateway(BENCH_PORTS.a)
  const off = await context.startGateway(BENCH_PORTS.b, { LOAD_SHEDDING_ENABLED: 'false' })
  const naive = await context.startBaseline('naiveBaseline', BENCH_PORTS.c)
  const paths = aggregatePaths()
  try {
    await Promise.all([on, off].map((service) => runLoad({ origin: service.origin, paths, connections: 16, durationSeconds: context.durationSeconds })))
    // Enough connections to saturate the gateway, few enough that fast 503s do not become a storm of retries.
    const capacityRun = await runLoad({ origin: off.origin, paths, connections: CAPACITY_CONNECTIONS, durationSeconds: context.durationSeconds })
    const capacity = Math.max(10, Math.round(capacityRun.acceptedThroughput))
    context.log(`capacity (closed loop, ${CAPACITY_CONNECTIONS} connections): ${capacity} requests/s`)
    await settle(off)

    type Run = Awaited<ReturnType<typeof runLoad>> & { peakRss: number | null, shedByReason: Record<string, number> }
    const measure = (service: Service, rate: number, gateway?: Gateway) => async (): Promise<Run> => {
      const before = gateway ? await shedCounts(gateway) : {}
      const stopWatching = watchPeakRss(service)
      const result = await runLoad({ origin: service.origin, paths, connections: Math.min(MAX_CONNECTIONS, rate), overallRate: rate, durationSeconds: context.durationSeconds, timeoutSeconds: 10 })
      const peakRss = stopWatching()
      await settle(service)
      const after = gateway ? await shedCounts(gateway) : {}
      const shedByReason = Object.fromEntries(Object.entries(after).map(([reason, count]) => [reason, count - (before[reason] ?? 0)]))
      return { ...result, peakRss, shedByReason }
    }
    const levels: Array<{ level: number, rate: number, results: Record<string, Run[]> }> = []
    for (const level of LEVELS) {
      const rate = level * capacity
      context.log(`offered ${level}x = ${rate} requests/s`)
      const results = await alternate(context.rounds, [
        { name: 'on', measure: measure(on, rate, on) },
        { name: 'off', measure: measure(off, rate, off) },
        { name: 'naive', measure: measure(naive, rate) }
      ])
      levels.push({ level, rate, results })
    }

    const of = (variant: string, pick: (run: Run) => number | null) => levels.map(({ results }) => spread(results[variant]!.map(pick)))
    const shedShare = (run: Run) => run.responses + run.errors + run.timeouts === 0 ? 0 : (100 * (run.byStatus['503'] ?? 0)) / (run.responses + run.errors + run.timeouts)
    const failed = (run: Run) => run.errors + run.timeouts + Object.entries(run.byStatus).filter(([code]) => code !== '503' && !code.startsWith('2')).reduce((sum, [, count]) => sum + count, 0)
    const metrics = (variant: string) => ({
      accepted: of(variant, (run) => run.acceptedThroughput),
      p99: of(variant, (run) => run.accepted.p99Ms),
      shedShare: of(variant, shedShare),
      shedP99: of(variant, (run) => run.shed.p99Ms),
      failed: of(variant, failed),
      peakRss: of(variant, (run) => run.peakRss === null ? null : run.peakRss / MiB),
      // Share of the shed requests turned away by the merge queue (full, or could not start before the deadline).
      mergeQueueShare: of(variant, (run) => {
        const total = Object.values(run.shedByReason).reduce((sum, count) => sum + count, 0)
        const mergeQueue = (run.shedByReason.merge_queue_full ?? 0) + (run.shedByReason.merge_queue_timeout ?? 0)
        return total === 0 ? null : (100 * mergeQueue) / total
      }),
      generator: of(variant, (run) => run.generatorCores)
    })
    const shedOn = metrics('on')
    const shedOff = metrics('off')
    const unbounded = metrics('naive')
    const row = (name: string, values: ReturnType<typeof metrics>, index: number) => [
      `${LEVELS[index]}× (${levels[index]!.rate}/s)`, name,
      formatSpread(values.accepted[index]!, 0), formatSpread(values.p99[index]!, 0), formatSpread(values.shedShare[index]!, 0, '%'),
      formatSpread(values.shedP99[index]!, 1), formatSpread(values.mergeQueueShare[index]!, 0, '%'), formatSpread(values.failed[index]!, 0), formatSpread(values.peakRss[index]!, 0),
      formatSpread(values.generator[index]!, 2)
    ]
    const last = LEVELS.length - 1
    const median = (value: Spread | undefined) => value?.median === null || value === undefined ? '–' : Math.round(value.median).toString()
    return {
      id: 'shedding',
      title: '4. Shedding (backpressure): load shedding on vs off, at 1×, 2× and 4× capacity',
      finding: `At ${LEVELS[last]}× capacity (${capacity}/s measured), with shedding the gateway serves ${median(shedOn.accepted[last])} requests/s at ${median(shedOn.p99[last])} ms p99 and answers the excess in ${median(shedOn.shedP99[last])} ms (p99), ${median(shedOn.failed[last])} failed or timed out, ${100 - Number(median(shedOn.mergeQueueShare[last]))}% of the 503s from the event-loop controller before any upstream call; without it: ${median(shedOff.accepted[last])}/s at ${median(shedOff.p99[last])} ms, ${median(shedOff.failed[last])} failed or timed out. The unbounded naive baseline serves ${median(unbounded.accepted[last])}/s, at ${median(unbounded.p99[last])} ms p99.`,
      setup: `Capacity: closed loop, ${CAPACITY_CONNECTIONS} connections, shedding off (${capacity} requests/s). Then a fixed offered rate (autocannon overallRate over 20 staggered instances, up to ${MAX_CONNECTIONS} connections, 10 s request timeout), latencies corrected for coordinated omission; ${context.durationSeconds} s per run, ${context.rounds} round(s) per level and variant, alternating. Upstreams at 20 ± 5 ms. Shedding on: the defaults (graduated, steering event-loop utilisation per 100 ms towards 0.9 and the worst delay under 100 ms; hard limit at 200 ms mean delay). Both variants refuse a request before its fan-out when the merge queue could not take it in time. 503 causes from each gateway's aggregate_load_shed_total. Shedding off still has the bounded queues (bulkheads, merge queue), which answer 503 when full; the naive baseline has none (bench/baselines/naive.ts). The load generator, the five mocks and the gateway share this machine's cores.`,
      table: {
        headers: ['offered', 'shedding', 'accepted/s', 'accepted p99 (ms)', 'shed (503)', 'shed p99 (ms)', 'shed by the merge queue', 'failed or timed out', 'peak RSS (MiB)', 'load generator CPU (cores)'],
        rows: LEVELS.flatMap((_, index) => [row('on', shedOn, index), row('off', shedOff, index), row('naive baseline (no bounds)', unbounded, index)])
      },
      chart: {
        title: 'Shedding: accepted-request p99 at 1×, 2×, 4× capacity (fixed rate, CO-corrected)',
        unit: 'ms',
        groups: LEVELS.map((level) => `${level}× capacity`),
        series: [{ name: 'shedding on', values: shedOn.p99 }, { name: 'shedding off', values: shedOff.p99 }, { name: 'naive, no bounds', values: unbounded.p99 }],
        logScale: true
      },
      data: { capacity, levels }
    }
  } finally {
    await Promise.all([on.stop(), off.stop(), naive.stop()])
  }
}
