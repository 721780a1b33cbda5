import { alternate, BENCH_PORTS, type BenchContext, type ScenarioResult } from '../lib/context.js'
import { runLoad } from '../lib/load.js'
import { ADMISSION_OFF } from '../lib/gateway.js'
import type { Service } from '../lib/processes.js'
import { formatSpread, spread } from '../lib/stats.js'

// 3. Offload (parallelism): heavy payloads, merged in the worker pool (one thread per core) or inline on the event
// loop (MERGE_INLINE_MAX_BYTES above any body). A second load generator probes GET /health at a fixed rate meanwhile:
// its latency is the event loop's responsiveness. Deadlines are long and admission and shedding are off in both, so both do the full
// work and only where the CPU work runs differs.

const PAYLOAD_SCALE = 10
const CONNECTIONS = 16
const HEALTH_RATE = 20
const USERS = 30

export async function offload (context: BenchContext): Promise<ScenarioResult> {
  await context.mocks.configure({ latencyMs: 10, jitterMs: 0, payloadScale: PAYLOAD_SCALE })
  const common = {
    ...ADMISSION_OFF,
    AGGREGATE_DEADLINE_MS: '10000',
    ...Object.fromEntries(['PROFILE', 'ORDERS', 'RECOMMENDATIONS', 'INVENTORY', 'LOYALTY'].map((name) => [`UPSTREAM_${name}_TIMEOUT_MS`, '9000'])),
    MERGE_POOL_MAX_QUEUE: '1000'
  }
  const pool = await context.startGateway(BENCH_PORTS.a, common)
  const inline = await context.startGateway(BENCH_PORTS.b, { ...common, MERGE_INLINE_MAX_BYTES: String(1024 ** 3) })
  const paths = Array.from({ length: USERS }, (_, index) => `/aggregate/heavy-user-${index}`)
  try {
    const measure = (service: Service) => async () => {
      const [aggregate, health] = await Promise.all([
        runLoad({ origin: service.origin, paths, connections: CONNECTIONS, durationSeconds: context.durationSeconds, timeoutSeconds: 30 }),
        runLoad({ origin: service.origin, paths: ['/health'], connections: 2, overallRate: HEALTH_RATE, durationSeconds: context.durationSeconds })
      ])
      return { aggregate, health }
    }
    // Warm-up: the mocks generate each heavy body once, the JIT compiles the merge.
    await Promise.all([measure(pool)(), measure(inline)()])
    const results = await alternate(context.rounds, [
      { name: 'pool', measure: measure(pool) },
      { name: 'inline', measure: measure(inline) }
    ])
    const of = (name: string, pick: (result: typeof results[string][number]) => number | null) => spread(results[name]!.map(pick))
    const rps = { pool: of('pool', (result) => result.aggregate.acceptedThroughput), inline: of('inline', (result) => result.aggregate.acceptedThroughput) }
    const healthP99 = { pool: of('pool', (result) => result.health.accepted.p99Ms), inline: of('inline', (result) => result.health.accepted.p99Ms) }
    const healthP50 = { pool: of('pool', (result) => result.health.accepted.p50Ms), inline: of('inline', (result) => result.health.accepted.p50Ms) }
    const healthMax = { pool: of('pool', (result) => result.health.accepted.maxMs), inline: of('inline', (result) => result.health.accepted.maxMs) }
    const aggregateP99 = { pool: of('pool', (result) => result.aggregate.accepted.p99Ms), inline: of('inline', (result) => result.aggregate.accepted.p99Ms) }
    const speedup = rps.pool.median && rps.inline.median ? (rps.pool.median / rps.inline.median).toFixed(2) : '–'
    return {
      id: 'offload',
      title: '3. Offload (parallelism): worker-pool merge vs the same merge inline',
      finding: `At ${PAYLOAD_SCALE}× payloads, merging in the worker pool gives ${speedup}× the throughput of merging on the event loop, and GET /health answers in ${formatSpread(healthP99.pool)} ms at p99 instead of ${formatSpread(healthP99.inline)} ms: the CPU work runs on other cores while the loop keeps doing I/O.`,
      setup: `${CONNECTIONS} connections on /aggregate (closed loop, ${USERS} users, payload scale ${PAYLOAD_SCALE}: about 1 MB of upstream bodies per aggregate), plus GET /health at ${HEALTH_RATE}/s (coordinated-omission corrected) from a second load-generator process; ${context.durationSeconds} s per round, ${context.rounds} round(s) each, alternating. Same gateway build; the inline variant sets MERGE_INLINE_MAX_BYTES=1 GiB. Admission and load shedding off (ADMISSION_ENABLED=false, LOAD_SHEDDING_ENABLED=false) and a 10 s deadline in both.`,
      table: {
        headers: ['', 'aggregates/s', 'aggregate p99 (ms)', '/health p50 (ms)', '/health p99 (ms)', '/health max (ms)'],
        rows: [
          ['worker pool', formatSpread(rps.pool), formatSpread(aggregateP99.pool, 0), formatSpread(healthP50.pool, 2), formatSpread(healthP99.pool, 2), formatSpread(healthMax.pool, 1)],
          ['inline on the event loop', formatSpread(rps.inline), formatSpread(aggregateP99.inline, 0), formatSpread(healthP50.inline, 2), formatSpread(healthP99.inline, 2), formatSpread(healthMax.inline, 1)]
        ]
      },
      chart: {
        title: `Offload: GET /health latency while merging ${PAYLOAD_SCALE}× payloads`,
        unit: 'ms',
        groups: ['/health p50', '/health p99'],
        series: [{ name: 'worker pool', values: [healthP50.pool, healthP99.pool] }, { name: 'inline', values: [healthP50.inline, healthP99.inline] }],
        logScale: true
      },
      data: results
    }
  } finally {
    await Promise.all([pool.stop(), inline.stop()])
  }
}
