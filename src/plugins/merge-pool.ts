import { fileURLToPath } from 'node:url'
import fp from 'fastify-plugin'
import { Piscina } from 'piscina'
import type { MergeRunner } from '../lib/aggregate/aggregator.js'
import { BulkheadRejectedError, createBulkhead } from '../lib/resilience/bulkhead.js'
import { MergeQueueFullError, MergeQueueTimeoutError } from '../errors.js'
import { countMergeWork, MERGE_WORK_COUNTERS, mergeSections, type MergeInput, type MergeResult } from '../lib/merge/merge-sections.js'
import { sharedCounters } from '../workers/shared-counters.js'
import { UPSTREAM_NAMES } from '../lib/contract/upstreams.js'
import type { MergeTaskResult } from '../workers/merge-worker.js'

export interface MergePool {
  run: MergeRunner
  /** Threads are up and the pool is accepting work. */
  isReady (): boolean
  readonly stats: { threads: number, queueSize: number, maxQueue: number, utilization: number, completed: number }
}

declare module 'fastify' {
  interface FastifyInstance {
    mergePool: MergePool
  }
}

// From source (tests, `npm run dev`) the worker is TypeScript and its thread needs tsx; built, it is plain JavaScript.
const fromSource = fileURLToPath(import.meta.url).endsWith('.ts')
const workerFile = new URL(`../workers/merge-worker.${fromSource ? 'ts' : 'js'}`, import.meta.url).href

function bodyBytes (input: MergeInput): number {
  let total = 0
  for (const name of UPSTREAM_NAMES) total += input.sections[name].fresh?.byteLength ?? 0
  return total
}

/** The client-facing error for a merge the admission queue turns away. */
const refusalError = (reason: BulkheadRejectedError['reason']) => reason === 'queue-full' ? new MergeQueueFullError() : new MergeQueueTimeoutError()

const warmUpInput = (): MergeInput => ({
  userId: 'warm-up',
  topK: 1,
  sections: Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, { otherwise: 'default' }])) as MergeInput['sections']
})

/**
 * The worker pool that merges responses: one thread per core, and in front of it a bounded, cancellable queue (the
 * same bulkhead as the upstream calls) that lets at most one merge per thread into piscina. So piscina never queues:
 * a merge still waiting when its request's deadline passes, or its client leaves, is dropped from our queue, and a
 * merge that has started always finishes. (piscina cancels a running task by terminating its thread, piscina#156, and
 * does not apply maxQueue to tasks submitted with a signal.)
 */
export default fp(async function mergePool (fastify) {
  const { threads, maxQueue, inlineMaxBytes, inlineWhenAloneMaxBytes, maxHeapMb } = fastify.config.mergePool
  // Work counted inside the threads (merges, candidates scored, ...): shared memory, updated with Atomics.
  const work = sharedCounters(MERGE_WORK_COUNTERS)
  const pool = new Piscina<MergeInput, MergeTaskResult>({
    filename: workerFile,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: Number.POSITIVE_INFINITY,
    execArgv: fromSource ? ['--import', 'tsx'] : [],
    resourceLimits: { maxOldGenerationSizeMb: maxHeapMb },
    workerData: { workCounters: work.buffer }
  })
  const admission = createBulkhead({ concurrency: threads, maxQueue })
  let closing = false

  // One task per thread loads the worker module and warms the merge code before the server says it is ready.
  await Promise.all(Array.from({ length: threads }, () => pool.run(warmUpInput())))

  async function runInPool (input: MergeInput, signal: AbortSignal, budgetMs: number): Promise<MergeResult> {
    const transferList = UPSTREAM_NAMES.flatMap((name) => input.sections[name].fresh?.buffer ?? []) as ArrayBuffer[]
    const submittedAt = performance.timeOrigin + performance.now()
    try {
      const { result, startedAt, finishedAt } = await admission.run(() => pool.run(input, { transferList }), { signal, budgetMs })
      fastify.telemetry.recordMergeTiming(Math.max(0, startedAt - submittedAt), finishedAt - startedAt)
      return result
    } catch (error) {
      if (error instanceof BulkheadRejectedError) throw refusalError(error.reason)
      // Left the queue because the deadline passed or the client went away: it never reached a thread.
      if (signal.aborted && error === signal.reason) throw new MergeQueueTimeoutError()
      throw error
    }
  }

  function runInline (input: MergeInput): MergeResult {
    const startedAt = performance.now()
    const result = mergeSections(input)
    fastify.telemetry.recordMergeTiming(0, performance.now() - startedAt)
    countMergeWork(work, result)
    return result
  }

  const run: MergeRunner = Object.assign((input: MergeInput, { signal, budgetMs, alone }: { signal: AbortSignal, budgetMs: number, alone: boolean }) => {
    // Handing off costs the loop less than merging at every size, so under load merges go to the pool. With nothing
    // else in flight the loop would only wait for the worker: merging here saves the round trip (one-connection p50
    // about halved, bench/scenarios/cpu-per-aggregate.ts). MERGE_INLINE_MAX_BYTES forces inline (the benchmark's baseline).
    const bytes = bodyBytes(input)
    if (bytes <= inlineMaxBytes || (alone && bytes <= inlineWhenAloneMaxBytes)) {
      try {
        return Promise.resolve(runInline(input))
      } catch (error) {
        return Promise.reject(error)
      }
    }
    return runInPool(input, signal, budgetMs)
  }, {
    refusal (budgetMs: number) {
      const reason = admission.refusal(budgetMs)
      return reason === null ? null : refusalError(reason)
    }
  })

  const stats = () => ({ threads: pool.threads.length, queueSize: admission.queued, maxQueue, utilization: pool.utilization, completed: pool.completed })
  fastify.telemetry.setMergePoolStateSource(() => ({ ...stats(), work: work.readAll() }))

  fastify.decorate<MergePool>('mergePool', {
    run,
    isReady: () => !closing && pool.threads.length > 0,
    get stats () { return stats() }
  })

  fastify.addHook('onClose', async () => {
    closing = true
    await pool.close()
  })
}, { name: 'merge-pool', dependencies: ['config', 'telemetry'] })
