import { move, transferableSymbol, valueSymbol, workerData } from 'piscina'
import { countMergeWork, MERGE_WORK_COUNTERS, mergeSections, type MergeInput, type MergeResult } from '../lib/merge/merge-sections.js'
import { sharedCounters } from './shared-counters.js'

export interface MergeTaskResult {
  result: MergeResult
  /** Wall-clock epoch milliseconds (performance.timeOrigin + now), comparable across threads. */
  startedAt: number
  finishedAt: number
}

// Shared with the main thread and every other merge thread: updated with Atomics only.
const work = workerData?.workCounters ? sharedCounters(MERGE_WORK_COUNTERS, workerData.workCounters as SharedArrayBuffer) : undefined

const now = () => performance.timeOrigin + performance.now()

/**
 * Piscina entry point: parses the upstream bodies and merges them off the event loop. The valid bodies are moved back
 * (not copied) so the caller can keep them as last-good values.
 */
export default function runMergeTask (input: MergeInput) {
  const startedAt = now()
  const result = mergeSections(input)
  if (work) countMergeWork(work, result)
  const buffers = [...new Set(Object.values(result.validFresh).map((body) => body.buffer))]
  const value: MergeTaskResult = { result, startedAt, finishedAt: now() }
  return move({
    get [transferableSymbol] () { return buffers },
    get [valueSymbol] () { return value }
  } as unknown as ArrayBuffer)
}
