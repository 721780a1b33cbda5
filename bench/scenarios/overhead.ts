import { alternate, BENCH_PORTS, type BenchContext, type ScenarioResult } from '../lib/context.js'
import { aggregatePaths, runLoad } from '../lib/load.js'
import type { Service } from '../lib/processes.js'
import { formatSpread, spread } from '../lib/stats.js'

// 2. Gateway overhead: upstreams answering at once. Latency at one connection (nothing queues), against a bare Fastify
// route that answers the same body through the same schema (the ceiling) and a single upstream call made directly (the
// floor: the gateway's five calls overlap, so it cannot beat its slowest one). Throughput at saturation, per CPU core
// the process actually used (read from /proc), worker threads included.

const SATURATING_CONNECTIONS = 32

export async function overhead (context: BenchContext): Promise<ScenarioResult> {
  await context.mocks.configure({ latencyMs: 0, jitterMs: 0 })
  const gateway = await context.startGateway(BENCH_PORTS.a)
  const bare = await context.startBaseline('bareFastify', BENCH_PORTS.b)
  const recommendations = context.mocks.services[2]!
  const paths = aggregatePaths()
  try {
    const latencyOf = (service: Service, servicePaths: string[]) => () => runLoad({ origin: service.origin, paths: servicePaths, connections: 1, durationSeconds: context.durationSeconds })
    const throughputOf = (service: Service) => async () => {
      const cpuBefore = service.cpuSeconds()
      const result = await runLoad({ origin: service.origin, paths, connections: SATURATING_CONNECTIONS, durationSeconds: context.durationSeconds })
      const cpuAfter = service.cpuSeconds()
      const cores = cpuBefore === null || cpuAfter === null ? null : (cpuAfter - cpuBefore) / result.durationSeconds
      return { ...result, cores, perCore: cores ? result.acceptedThroughput / cores : null }
    }
    const directPaths = Array.from({ length: 200 }, (_, index) => `/users/bench-user-${index}/recommendations`)
    const warmUps = await Promise.all([latencyOf(gateway, paths)(), latencyOf(bare, paths)()])
    // A baseline that answers errors measures nothing (the bare route once failed its own response schema).
    for (const [index, warmUp] of warmUps.entries()) if (warmUp.acceptedThroughput === 0) throw new Error(`${index === 0 ? 'the gateway' : 'the bare route'} answered no 200 while warming up: ${JSON.stringify(warmUp.byStatus)}`)

    const latency = await alternate(context.rounds, [
      { name: 'gateway', measure: latencyOf(gateway, paths) },
      { name: 'bare', measure: latencyOf(bare, paths) },
      { name: 'upstream', measure: latencyOf(recommendations, directPaths) }
    ])
    const throughput = await alternate(context.rounds, [
      { name: 'gateway', measure: throughputOf(gateway) },
      { name: 'bare', measure: throughputOf(bare) }
    ])

    const micros = (name: string, percentile: 'p50Ms' | 'p99Ms') => spread(latency[name]!.map((result) => result.accepted[percentile] === null ? null : result.accepted[percentile]! * 1000))
    const gatewayP50 = micros('gateway', 'p50Ms')
    const gatewayP99 = micros('gateway', 'p99Ms')
    const upstreamP50 = micros('upstream', 'p50Ms')
    const upstreamP99 = micros('upstream', 'p99Ms')
    // Per round, gateway minus its floor (one direct upstream call of the same round).
    const added = (percentile: 'p50Ms' | 'p99Ms') => spread(latency.gateway!.map((result, round) => {
      const floor = latency.upstream![round]!.accepted[percentile]
      return result.accepted[percentile] === null || floor === null ? null : (result.accepted[percentile]! - floor) * 1000
    }))
    const rps = (name: string) => spread(throughput[name]!.map((result) => result.acceptedThroughput))
    const perCore = (name: string) => spread(throughput[name]!.map((result) => result.perCore))
    const cores = (name: string) => spread(throughput[name]!.map((result) => result.cores))
    const addedP50 = added('p50Ms')

    return {
      id: 'overhead',
      title: '2. Gateway overhead: gateway vs a bare Fastify route',
      finding: `With instant upstreams the gateway adds about ${Math.round(addedP50.median ?? 0)} µs at p50 over a single direct upstream call, for five calls, a worker-pool merge and the response; it serves ${formatSpread(perCore('gateway'), 0)} requests/s per core used, against ${formatSpread(perCore('bare'), 0)} for a bare route that only serialises the same body.`,
      setup: `Latency: 1 connection, ${context.durationSeconds} s per round; throughput: ${SATURATING_CONNECTIONS} connections. ${context.rounds} round(s) each, alternating. Upstreams answer at once (payload scale 1, ~100 kB per aggregate). CPU from /proc/<pid>/stat, all threads of the measured process (not the mocks or the load generator).`,
      table: {
        headers: ['', 'p50 (µs)', 'p99 (µs)', 'requests/s', 'CPU cores used', 'requests/s per core'],
        rows: [
          ['gateway (5 calls + merge)', formatSpread(gatewayP50, 0), formatSpread(gatewayP99, 0), formatSpread(rps('gateway'), 0), formatSpread(cores('gateway'), 2), formatSpread(perCore('gateway'), 0)],
          ['bare Fastify, same body', formatSpread(micros('bare', 'p50Ms'), 0), formatSpread(micros('bare', 'p99Ms'), 0), formatSpread(rps('bare'), 0), formatSpread(cores('bare'), 2), formatSpread(perCore('bare'), 0)],
          ['one upstream call, direct', formatSpread(upstreamP50, 0), formatSpread(upstreamP99, 0), '', '', ''],
          ['added by the gateway', formatSpread(addedP50, 0), formatSpread(added('p99Ms'), 0), '', '', '']
        ]
      },
      chart: {
        title: 'Overhead: latency at one connection, upstreams at 0 ms',
        unit: 'µs',
        groups: ['p50', 'p99'],
        series: [
          { name: 'gateway', values: [gatewayP50, gatewayP99] },
          { name: 'bare Fastify route', values: [micros('bare', 'p50Ms'), micros('bare', 'p99Ms')] },
          { name: 'one upstream call', values: [upstreamP50, upstreamP99] }
        ]
      },
      data: { latency, throughput }
    }
  } finally {
    await Promise.all([gateway.stop(), bare.stop()])
  }
}
