import { move, transferableSymbol, valueSymbol } from 'piscina'
import { mergeSections, type MergeInput, type MergeResult } from '../lib/merge/merge-sections.js'

export interface MergeTask {
  input: MergeInput
  /** Set to 1 the moment the task starts, so the caller knows it can no longer cancel it without killing this thread. */
  started: Int32Array
}

/**
 * Piscina entry point: parses the upstream bodies and merges them off the event loop. The valid bodies are moved back
 * (not copied) so the caller can keep them as last-good values.
 */
export default function runMergeTask ({ input, started }: MergeTask) {
  Atomics.store(started, 0, 1)
  const result = mergeSections(input)
  const buffers = [...new Set(Object.values(result.validFresh).map((body) => body.buffer))]
  return move({
    get [transferableSymbol] () { return buffers },
    get [valueSymbol] (): MergeResult { return result }
  } as unknown as ArrayBuffer)
}
