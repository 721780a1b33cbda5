import { availableParallelism, cpus } from 'node:os'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import { inventoryFor, loyaltyFor, ordersFor, profileFor, recommendationsFor } from '../mock-services/data.js'
import { MERGE_WORK_COUNTERS, parseJson, type MergeInput } from '../src/lib/merge/merge-sections.js'
import { mergeSections } from './lib/merge.js'
import { registry, UPSTREAM_NAMES, type BuiltInUpstream as UpstreamName } from '../src/lib/contract/upstreams.js'
import type { MergeTaskResult, MergeWorkerData } from '../src/workers/merge-worker.js'

// Where should the merge run? For each payload scale, how much event-loop time one request's merge costs:
//   parse only  JSON.parse of the five bodies on the loop (what the loop would pay just to parse them)
//   inline      parse and merge on the loop
//   pool        hand the bytes to a worker (transferList) and take the result back: the loop pays only the hand-off
// plus the wall time of a pool round trip. Event-loop time is measured as event-loop utilisation (active time),
// which counts exactly the main thread's work and none of the worker's.

export interface PlacementRow {
  scale: number
  bodyBytes: number
  parseOnLoopMs: number
  inlineLoopMs: number
  poolLoopMs: number
  poolWallMs: number
}

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

function bodies (userId: string, scale: number): Record<UpstreamName, Uint8Array> {
  return {
    profile: encode(profileFor(userId)),
    orders: encode(ordersFor(userId, scale)),
    recommendations: encode(recommendationsFor(userId, scale)),
    inventory: encode(inventoryFor(userId, scale)),
    loyalty: encode(loyaltyFor(userId, scale))
  }
}

function inputFrom (userId: string, source: Record<UpstreamName, Uint8Array>): MergeInput {
  // A copy per run: the pool transfers (detaches) the buffers it is given.
  const sections = Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, { fresh: source[name].slice(), otherwise: 'default' }]))
  return { userId, topK: 10, sections: sections as MergeInput['sections'] }
}

/** Main-thread active milliseconds per call of `run`, over `rounds` sequential calls (copies excluded). */
async function loopTimePerCall (rounds: number, prepare: () => MergeInput, run: (input: MergeInput) => unknown): Promise<{ loopMs: number, wallMs: number }> {
  const inputs = Array.from({ length: rounds }, prepare)
  const before = performance.eventLoopUtilization()
  const startedAt = performance.now()
  for (const input of inputs) await run(input)
  const wallMs = (performance.now() - startedAt) / rounds
  const { active } = performance.eventLoopUtilization(before)
  return { loopMs: active / rounds, wallMs }
}

export async function measureMergePlacement ({ scales = [0.05, 0.25, 1, 5, 10], rounds = 40 } = {}): Promise<PlacementRow[]> {
  const workerFile = new URL('../src/workers/merge-worker.js', import.meta.url)
  const fromSource = fileURLToPath(import.meta.url).endsWith('.ts')
  const pool = new Piscina<MergeInput, MergeTaskResult>({
    filename: fromSource ? workerFile.href.replace(/\.js$/, '.ts') : workerFile.href,
    minThreads: 1,
    maxThreads: 1,
    idleTimeout: Number.POSITIVE_INFINITY,
    execArgv: fromSource ? ['--import', 'tsx'] : [],
    workerData: { registryModule: registry.module, workCounters: new SharedArrayBuffer(MERGE_WORK_COUNTERS.length * 8) } satisfies MergeWorkerData
  })
  const runInPool = (input: MergeInput) => pool.run(input, { transferList: UPSTREAM_NAMES.map((name) => input.sections[name]!.fresh!.buffer as ArrayBuffer) })
  const rows: PlacementRow[] = []
  try {
    for (const scale of scales) {
      const source = bodies(`placement-${scale}`, scale)
      const prepare = () => inputFrom('placement', source)
      // Warm both paths so the JIT has compiled the merge before it is timed.
      for (let index = 0; index < 5; index++) {
        mergeSections(prepare())
        await runInPool(prepare())
      }
      const parse = await loopTimePerCall(rounds, prepare, (input) => { for (const name of UPSTREAM_NAMES) parseJson(input.sections[name]!.fresh!) })
      const inline = await loopTimePerCall(rounds, prepare, mergeSections)
      const pooled = await loopTimePerCall(rounds, prepare, runInPool)
      rows.push({
        scale,
        bodyBytes: UPSTREAM_NAMES.reduce((sum, name) => sum + source[name].byteLength, 0),
        parseOnLoopMs: parse.loopMs,
        inlineLoopMs: inline.loopMs,
        poolLoopMs: pooled.loopMs,
        poolWallMs: pooled.wallMs
      })
    }
  } finally {
    await pool.destroy()
  }
  return rows
}

export function placementTable (rows: PlacementRow[]): string {
  const ms = (value: number) => value.toFixed(3)
  return [
    '| payload scale | body bytes | parse on loop (ms) | inline merge, loop time (ms) | pool merge, loop time (ms) | pool round trip, wall (ms) |',
    '|---:|---:|---:|---:|---:|---:|',
    ...rows.map((row) => `| ${row.scale} | ${row.bodyBytes.toLocaleString('en')} | ${ms(row.parseOnLoopMs)} | ${ms(row.inlineLoopMs)} | ${ms(row.poolLoopMs)} | ${ms(row.poolWallMs)} |`)
  ].join('\n')
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  console.log(`machine: ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}`)
  console.log(placementTable(await measureMergePlacement()))
}
