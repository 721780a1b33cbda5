import { alternate, BENCH_PORTS, type BenchContext, type Gateway, type ScenarioResult } from '../lib/context.js'
import { metricValues } from '../lib/gateway.js'
import { runLoad } from '../lib/load.js'
import { formatSpread, spread, type Spread } from '../lib/stats.js'

// 6. Where the merge runs, through HTTP: the same gateway build twice, one handing every merge to its worker pool
// (MERGE_INLINE_WHEN_ALONE_MAX_BYTES=0: even alone), one merging every aggregate on its event loop
// (MERGE_INLINE_MAX_BYTES above any body), at one connection so each aggregate's cost stands alone, by payload size.
// The event loop's cost is the main thread's CPU per aggregate (/proc/<pid>/task/<pid>/stat), everything the loop does
// for it: the inbound request, five upstream calls, the hand-off or the merge, the response. The difference between the
// two is what moving the merge off the loop saves it. test/workers/merge-placement.bench.ts times the merge alone.

const SCALES = [0.05, 0.25, 1, 5, 10]
const DEFAULT_SCALE = 1
const USERS = 20

interface Run {
  mainThreadMs: number | null
  allThreadsMs: number | null
  p50Ms: number | null
  bodyBytes: number | null
}

export async function mergePlacement (context: BenchContext): Promise<ScenarioResult> {
  const seconds = context.quick ? 1 : 3
  const pool = await context.startGateway(BENCH_PORTS.a, { MERGE_INLINE_WHEN_ALONE_MAX_BYTES: '0' })
  const inline = await context.startGateway(BENCH_PORTS.b, { MERGE_INLINE_MAX_BYTES: String(1024 ** 3) }).catch(async (error: unknown) => {
    await pool.stop()
    throw error
  })
  try {
    const measure = (gateway: Gateway, paths: string[]) => async (): Promise<Run> => {
      const mergeWork = () => metricValues(gateway, ['aggregate_merge_tasks_total', 'aggregate_merge_bytes_parsed_total'] as const)
      const [mainBefore, allBefore, workBefore] = [gateway.mainThreadCpuSeconds(), gateway.cpuSeconds(), await mergeWork()]
      const result = await runLoad({ origin: gateway.origin, paths, connections: 1, durationSeconds: seconds })
      const [mainAfter, allAfter, workAfter] = [gateway.mainThreadCpuSeconds(), gateway.cpuSeconds(), await mergeWork()]
      const served = result.byStatus['200'] ?? 0
      const perAggregate = (before: number | null, after: number | null) => before === null || after === null || served === 0 ? null : (1000 * (after - before)) / served
      const merges = workAfter.aggregate_merge_tasks_total - workBefore.aggregate_merge_tasks_total
      return {
        mainThreadMs: perAggregate(mainBefore, mainAfter),
        allThreadsMs: perAggregate(allBefore, allAfter),
        p50Ms: result.accepted.p50Ms,
        bodyBytes: merges > 0 ? (workAfter.aggregate_merge_bytes_parsed_total - workBefore.aggregate_merge_bytes_parsed_total) / merges : null
      }
    }

    const rows: Array<{ scale: number, pool: Run[], inline: Run[] }> = []
    for (const scale of SCALES) {
      context.log(`payload scale ${scale}`)
      await context.mocks.configure({ latencyMs: 0, jitterMs: 0, payloadScale: scale })
      const paths = Array.from({ length: USERS }, (_, index) => `/aggregate/placement-${String(scale).replace('.', '_')}-${index}`)
      // Warm-up: the mocks make each user's bodies once, the JIT compiles both paths, the stale cache fills.
      await measure(pool, paths)()
      await measure(inline, paths)()
      const runs = await alternate(context.rounds, [
        { name: 'pool', measure: measure(pool, paths) },
        { name: 'inline', measure: measure(inline, paths) }
      ])
      rows.push({ scale, pool: runs.pool!, inline: runs.inline! })
    }

    const of = (runs: Run[], key: keyof Run) => spread(runs.map((run) => run[key]))
    // Per round: inline minus pool, the two measured next to each other.
    const saved = (row: typeof rows[number], key: 'mainThreadMs' | 'allThreadsMs' | 'p50Ms') =>
      spread(row.inline.map((run, round) => {
        const pooled = row.pool[round]?.[key] ?? null
        return run[key] === null || pooled === null ? null : run[key]! - pooled
      }))
    const kB = (row: typeof rows[number]) => `${Math.round((of(row.pool, 'bodyBytes').median ?? 0) / 1000)} kB`
    const ms = (value: Spread, digits = 2) => value.median === null ? '–' : value.median.toFixed(digits)
    const smallest = rows[0]!
    const largest = rows.at(-1)!
    const atDefault = rows.find((row) => row.scale === DEFAULT_SCALE)!
    const loopEffect = (row: typeof rows[number]) => {
      const difference = saved(row, 'mainThreadMs').median
      if (difference === null) return 'an unknown amount'
      return difference >= 0 ? `${difference.toFixed(2)} ms off the loop` : `${(-difference).toFixed(2)} ms onto the loop`
    }
    const aloneEffect = saved(atDefault, 'p50Ms').median
    return {
      id: 'merge-placement',
      title: '6. Where the merge runs: the event loop\'s CPU per aggregate, merge in the pool vs on the loop',
      finding: `At one connection the gateway's main thread spends ${ms(of(smallest.inline, 'mainThreadMs'))} ms per aggregate at ${kB(smallest)} of upstream bodies and ${ms(of(largest.inline, 'mainThreadMs'))} ms at ${kB(largest)} when it merges on the loop, and ${ms(of(smallest.pool, 'mainThreadMs'))} and ${ms(of(largest.pool, 'mainThreadMs'))} ms when it hands the merge to the pool: the pool takes ${loopEffect(smallest)} at ${kB(smallest)}, ${loopEffect(atDefault)} at the default ${kB(atDefault)} and ${loopEffect(largest)} at ${kB(largest)}. So under load merges go to the pool; alone, a small merge runs on the loop, which has nothing else to do (MERGE_INLINE_WHEN_ALONE_MAX_BYTES): at the default size that answers ${aloneEffect === null ? '–' : (-aloneEffect).toFixed(2)} ms sooner at p50.`,
      setup: `Two gateways from the same build: "pool" with MERGE_INLINE_WHEN_ALONE_MAX_BYTES=0 (every merge handed to the worker pool), "inline" with MERGE_INLINE_MAX_BYTES=1 GiB (every merge on the event loop); defaults otherwise. Per payload scale (${SCALES.join(', ')}; upstreams answering at once): 1 connection, closed loop, ${USERS} users, ${seconds} s per round after a warm-up, ${context.rounds} round(s) each, alternating. Main thread: CPU seconds of the gateway's main thread from /proc/<pid>/task/<pid>/stat over the run, per 200; all threads: the whole process's, merge threads included. Body bytes: the gateway's aggregate_merge_bytes_parsed_total per merge.`,
      table: {
        headers: ['payload scale', 'upstream bodies per aggregate', 'main thread per aggregate, inline (ms)', 'main thread per aggregate, pool (ms)', 'taken off the loop by the pool (ms)', 'all threads per aggregate, inline (ms)', 'all threads per aggregate, pool (ms)', 'p50, inline (ms)', 'p50, pool (ms)'],
        rows: rows.map((row) => [
          String(row.scale), kB(row),
          formatSpread(of(row.inline, 'mainThreadMs'), 2), formatSpread(of(row.pool, 'mainThreadMs'), 2), formatSpread(saved(row, 'mainThreadMs'), 2),
          formatSpread(of(row.inline, 'allThreadsMs'), 2), formatSpread(of(row.pool, 'allThreadsMs'), 2),
          formatSpread(of(row.inline, 'p50Ms'), 2), formatSpread(of(row.pool, 'p50Ms'), 2)
        ])
      },
      chart: {
        title: 'Event-loop (main thread) CPU per aggregate, by upstream body size',
        unit: 'ms of main-thread CPU',
        groups: rows.map(kB),
        series: [
          { name: 'merge on the loop', values: rows.map((row) => of(row.inline, 'mainThreadMs')) },
          { name: 'merge in the pool', values: rows.map((row) => of(row.pool, 'mainThreadMs')) }
        ],
        logScale: true
      },
      data: rows
    }
  } finally {
    await Promise.all([pool.stop(), inline.stop()])
  }
}
