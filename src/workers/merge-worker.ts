import { move, transferableSymbol, valueSymbol, workerData } from 'piscina'
import type { UpstreamRegistry } from '../lib/contract/upstreams.js'
import { countMergeWork, loadMerger, MERGE_WORK_COUNTERS, type MergeInput, type Merger, type MergeResult } from '../lib/merge/merge-sections.js'
import { sharedCounters } from './shared-counters.js'
import { lowerThisThreadsPriority } from './thread-priority.js'

export interface MergeWorkerData {
  /** The module exporting the gateway's `registry`: this thread merges the same upstreams. */
  registryModule: string
  /** Shared with the main thread and every other merge thread: updated with Atomics only. */
  workCounters: SharedArrayBuffer
  /** The OS niceness this thread runs at (0: the process's own priority; higher: yields to every other thread). */
  niceness: number
}

export interface MergeTaskResult {
  result: MergeResult
  /** Wall-clock epoch milliseconds (performance.timeOrigin + now), comparable across threads. */
  startedAt: number
  finishedAt: number
}

const { registryModule, workCounters, niceness } = workerData as MergeWorkerData
const work = sharedCounters(MERGE_WORK_COUNTERS, workCounters)
lowerThisThreadsPriority(niceness)
// Run from source (`npm run dev`), this thread has tsx's hooks, but they do not reach import() of a .ts file
// (nor a module with top-level await): tsx's own tsImport loads the registry and its sections then.
const importModule = import.meta.url.endsWith('.ts')
  ? async (url: string) => (await import('tsx/esm/api')).tsImport(url, import.meta.url) as Promise<unknown>
  : async (url: string) => import(url) as Promise<unknown>
let merger: Merger | undefined
// Loaded by the first task (the pool's warm-up).
const loading = importModule(registryModule)
  .then((module) => loadMerger((module as { registry: UpstreamRegistry }).registry, importModule))
  .then((loaded) => { merger = loaded })

const now = () => performance.timeOrigin + performance.now()

/**
 * Piscina entry point: parses the upstream bodies and merges them off the event loop. The valid bodies are moved back
 * (not copied) so the caller can keep them as last-good values.
 */
export default function runMergeTask (input: MergeInput): unknown {
  if (merger === undefined) return loading.then(() => runMergeTask(input))
  const startedAt = now()
  const result = merger.merge(input)
  countMergeWork(work, result)
  const buffers = [...new Set(Object.values(result.validFresh).map((body) => body!.buffer))]
  const value: MergeTaskResult = { result, startedAt, finishedAt: now() }
  return move({
    get [transferableSymbol] () { return buffers },
    get [valueSymbol] () { return value }
  } as unknown as ArrayBuffer)
}

/** The pool's warm-up, one task per thread: loads the merge and runs it once, counted in no metric (no request asked for it). */
export async function warmUp (input: MergeInput): Promise<null> {
  await loading
  merger!.merge(input)
  return null
}
