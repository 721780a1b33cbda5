import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import { MergeQueueFullError, MergeQueueTimeoutError } from '../errors.js'
import { channels, type MergeMessage } from '../lib/contract/events.js'
import type { UpstreamRegistry } from '../lib/contract/upstreams.js'
import type { MergeRunner } from '../lib/aggregate/aggregator.js'
import { countMergeWork, loadMerger, MERGE_WORK_COUNTERS, type MergeInput, type MergeResult } from '../lib/merge/merge-sections.js'
import { BulkheadRejectedError, createBulkhead } from '../lib/resilience/bulkhead.js'
import type { MergeTaskResult, MergeWorkerData } from './merge-worker.js'
import { sharedCounters } from './shared-counters.js'

export interface MergePoolSettings {
  threads: number
  maxQueue: number
  inlineMaxBytes: number
  inlineWhenAloneMaxBytes: number
  maxHeapMb: number
  /** The OS niceness of the threads (0 when absent): a batch's pool runs below the event loop and interactive merges. */
  niceness?: number
  /** Counters of merge work to add to (those of another pool, so one set counts every merge); new ones when absent. */
  workCounters?: SharedArrayBuffer
}

/** The module a merge thread runs, and the Node options its thread needs to load it. */
export interface MergeWorkerEntry {
  filename: string
  execArgv: string[]
}

// From source (`npm run dev`) a thread's module is TypeScript and its thread needs tsx; built, it is plain JavaScript.
// Tests pass a compiled copy of the source instead: tsx costs each thread a second or more to load.
const fromSource = fileURLToPath(import.meta.url).endsWith('.ts')

/** The entry of a thread whose module is `path` (no extension), relative to this folder, run from source or built. */
export const threadEntry = (path: string): MergeWorkerEntry => ({
  filename: new URL(`${path}.${fromSource ? 'ts' : 'js'}`, import.meta.url).href,
  execArgv: fromSource ? ['--import', 'tsx'] : []
})
const defaultWorker = threadEntry('./merge-worker')

/** The client-facing error for a merge the pool's queue turns away. */
const refusalError = (reason: BulkheadRejectedError['reason']) => reason === 'queue-full' ? new MergeQueueFullError() : new MergeQueueTimeoutError()

const publishMerge = (message: MergeMessage) => { if (channels.merge.hasSubscribers) channels.merge.publish(message) }

/**
 * The worker pool that merges responses: one thread per core, and in front of it a bounded, cancellable queue (the
 * same bulkhead as the upstream calls) that lets at most one merge per thread into piscina. So piscina never queues:
 * a merge still waiting when its request's deadline passes, or its client leaves, is dropped from our queue, and a
 * merge that has started always finishes. (piscina cancels a running task by terminating its thread, piscina#156, and
 * does not apply maxQueue to tasks submitted with a signal.) Resolves once every thread has loaded the merge.
 * `worker` is the module the threads run, by default the one beside this file; each thread imports `registry.module`.
 */
export async function createMergePool (registry: UpstreamRegistry, settings: MergePoolSettings, worker: MergeWorkerEntry = defaultWorker) {
  const { threads, maxQueue, inlineMaxBytes, inlineWhenAloneMaxBytes, maxHeapMb, niceness = 0, workCounters } = settings
  const merger = await loadMerger(registry)
  // Work counted inside the threads (merges, candidates scored, ...): shared memory, updated with Atomics.
  const work = sharedCounters(MERGE_WORK_COUNTERS, workCounters)
  const pool = new Piscina<MergeInput, MergeTaskResult>({
    filename: worker.filename,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: Number.POSITIVE_INFINITY,
    execArgv: worker.execArgv,
    resourceLimits: { maxOldGenerationSizeMb: maxHeapMb },
    workerData: { registryModule: registry.module, workCounters: work.buffer, niceness } satisfies MergeWorkerData
  })
  const admission = createBulkhead({ concurrency: threads, maxQueue })
  let closing = false

  // One task per thread loads the worker module and warms the merge code before the server says it is ready (the
  // thread's `warmUp`, not counted as a merge).
  const warmUp: MergeInput = { userId: 'warm-up', topK: 1, sections: Object.fromEntries(merger.names.map((name) => [name, { otherwise: 'default' }])) }
  await Promise.all(Array.from({ length: threads }, () => pool.run(warmUp, { name: 'warmUp' })))

  const bodyBytes = (input: MergeInput) => {
    let total = 0
    for (const name of merger.names) total += input.sections[name]?.fresh?.byteLength ?? 0
    return total
  }

  async function runInPool (input: MergeInput, signal: AbortSignal, budgetMs: number): Promise<MergeResult> {
    const transferList = merger.names.flatMap((name) => input.sections[name]?.fresh?.buffer ?? []) as ArrayBuffer[]
    const submittedAt = performance.timeOrigin + performance.now()
    try {
      const { result, startedAt, finishedAt } = await admission.run(() => pool.run(input, { transferList }), { signal, budgetMs })
      publishMerge({ placement: 'pool', waitMs: Math.max(0, startedAt - submittedAt), runMs: finishedAt - startedAt })
      return result
    } catch (error) {
      if (error instanceof BulkheadRejectedError) throw refusalError(error.reason)
      // Left the queue because the deadline passed or the client went away: it never reached a thread.
      if (signal.aborted && error === signal.reason) throw new MergeQueueTimeoutError()
      throw error
    }
  }

  function runHere (input: MergeInput): MergeResult {
    const startedAt = performance.now()
    const result = merger.merge(input)
    publishMerge({ placement: 'inline', waitMs: 0, runMs: performance.now() - startedAt })
    countMergeWork(work, result)
    return result
  }

  const runner: MergeRunner = {
    run (input, { signal, budgetMs, alone }) {
      // Handing off costs the loop less than merging at every size, so under load merges go to the pool. With nothing
      // else in flight the loop would only wait for the worker: merging here saves the round trip (one-connection p50
      // about halved, bench/scenarios/cpu-per-aggregate.ts). MERGE_INLINE_MAX_BYTES forces inline (the benchmark's baseline).
      const bytes = bodyBytes(input)
      if (bytes <= inlineMaxBytes || (alone && bytes <= inlineWhenAloneMaxBytes)) {
        try {
          return Promise.resolve(runHere(input))
        } catch (error) {
          return Promise.reject(error)
        }
      }
      return runInPool(input, signal, budgetMs)
    },
    runHere,
    refusal (budgetMs) {
      const reason = admission.refusal(budgetMs)
      return reason === null ? null : refusalError(reason)
    }
  }

  return {
    runner,
    /** Threads are up and the pool is accepting work. */
    isReady: () => !closing && pool.threads.length > 0,
    /** The shared memory its work is counted in (and any pool given the same buffer). */
    workCounters: work.buffer,
    stats: () => ({ threads: pool.threads.length, queueSize: admission.queued, maxQueue, utilization: pool.utilization, completed: pool.completed, work: work.readAll() }),
    async close () {
      closing = true
      await pool.close()
    }
  }
}

export type MergePool = Awaited<ReturnType<typeof createMergePool>>
