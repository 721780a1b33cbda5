import type { BenchContext, ScenarioResult } from '../lib/context.js'
import { spread } from '../lib/stats.js'
import { measureMergePlacement } from '../merge-placement.js'

// 6. Where the merge runs, measured directly: the event-loop time one merge costs inline and handed to a worker, by
// payload size. This is the measurement behind MERGE_INLINE_MAX_BYTES=0 and behind parsing in the worker.

export async function mergePlacement (context: BenchContext): Promise<ScenarioResult> {
  const rows = await measureMergePlacement({ rounds: context.quick ? 10 : 40 })
  const single = (value: number) => spread([value])
  return {
    id: 'merge-placement',
    title: '6. Where the merge runs: event-loop time per merge',
    finding: `Handing a merge to the pool costs the event loop ${Math.min(...rows.map((row) => row.poolLoopMs)).toFixed(2)}–${Math.max(...rows.map((row) => row.poolLoopMs)).toFixed(2)} ms at every size; merging inline costs ${rows[0]!.inlineLoopMs.toFixed(2)} ms at ${Math.round(rows[0]!.bodyBytes / 1000)} kB and ${rows.at(-1)!.inlineLoopMs.toFixed(1)} ms at ${Math.round(rows.at(-1)!.bodyBytes / 1000)} kB, and JSON.parse alone ${rows.find((row) => row.scale === 1)?.parseOnLoopMs.toFixed(2)} ms at the default size: so under load bodies go to the worker unparsed; only a small merge with no other aggregate in flight runs on the loop, which would otherwise just wait for the worker (MERGE_INLINE_WHEN_ALONE_MAX_BYTES).`,
    setup: `One merge at a time, ${context.quick ? 10 : 40} per size after a warm-up; event-loop time is the main thread's active time (performance.eventLoopUtilization), which excludes the worker's own CPU.`,
    table: {
      headers: ['payload scale', 'body bytes', 'parse on loop (ms)', 'inline merge, loop time (ms)', 'pool merge, loop time (ms)', 'pool round trip, wall (ms)'],
      rows: rows.map((row) => [String(row.scale), row.bodyBytes.toLocaleString('en'), row.parseOnLoopMs.toFixed(3), row.inlineLoopMs.toFixed(3), row.poolLoopMs.toFixed(3), row.poolWallMs.toFixed(3)])
    },
    chart: {
      title: 'Event-loop time per merge, by payload size',
      unit: 'ms of event loop',
      groups: rows.map((row) => `${Math.round(row.bodyBytes / 1000)} kB`),
      series: [
        { name: 'inline merge', values: rows.map((row) => single(row.inlineLoopMs)) },
        { name: 'JSON.parse only', values: rows.map((row) => single(row.parseOnLoopMs)) },
        { name: 'hand-off to pool', values: rows.map((row) => single(row.poolLoopMs)) }
      ],
      logScale: true
    },
    data: rows
  }
}
