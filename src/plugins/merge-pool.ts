import { fileURLToPath } from 'node:url'
import fp from 'fastify-plugin'
import { Piscina } from 'piscina'
import type { MergeRunner } from '../lib/aggregator.js'
import { MergeQueueFullError, MergeQueueTimeoutError } from '../lib/errors.js'
import { MERGE_WORK_COUNTERS, mergeSections, type MergeInput, type MergeResult } from '../lib/merge/merge-sections.js'
import { sharedCounters } from '../lib/shared-counters.js'
import { UPSTREAM_NAMES } from '../lib/upstreams.js'
import type { MergeTask, MergeTaskResult } from '../workers/merge-worker.js'

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

const warmUpInput = (): MergeInput => ({
  userId: 'warm-up',
  topK: 1,
  sections: Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, { otherwise: 'default' }])) as MergeInput['sections']
})

/**
 * The worker pool that merges responses: sized to the cores, with a bounded queue. A merge still waiting in the queue
 * when its request's deadline passes (or its client leaves) is removed; a running one is left to finish, because
 * piscina can only cancel a running task by terminating its thread.
 */
export default fp(async function mergePool (fastify) {
  const { threads, maxQueue, inlineMaxBytes, maxHeapMb } = fastify.config.mergePool
  // Work counted inside the threads (merges, candidates scored, ...): shared memory, updated with Atomics.
  const work = sharedCounters(MERGE_WORK_COUNTERS)
  const pool = new Piscina<MergeTask, MergeTaskResult>({
    filename: workerFile,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: Number.POSITIVE_INFINITY,
    execArgv: fromSource ? ['--import', 'tsx'] : [],
    resourceLimits: { maxOldGenerationSizeMb: maxHeapMb },
    workerData: { workCounters: work.buffer }
  })
  let closing = false
  // Merges handed to the pool and not yet settled. piscina 5 does not apply maxQueue to tasks submitted with a signal
  // (they wait in a separate queue it never counts), so the bound is enforced here.
  let admitted = 0

  // One task per thread loads the worker module and warms the merge code before the server says it is ready.
  await Promise.all(Array.from({ length: threads }, () => pool.run({ input: warmUpInput(), started: new Int32Array(new SharedArrayBuffer(4)) })))

  async function runInPool (input: MergeInput, signal: AbortSignal): Promise<MergeResult> {
    if (signal.aborted) throw new MergeQueueTimeoutError()
    if (admitted >= threads + maxQueue) throw new MergeQueueFullError()
    admitted++
    const started = new Int32Array(new SharedArrayBuffer(4))
    const cancelIfQueued = new AbortController()
    const onAbort = () => { if (Atomics.load(started, 0) === 0) cancelIfQueued.abort() }
    signal.addEventListener('abort', onAbort, { once: true })
    const transferList = UPSTREAM_NAMES.flatMap((name) => input.sections[name].fresh?.buffer ?? [])
    const submittedAt = performance.timeOrigin + performance.now()
    try {
      const { result, startedAt, finishedAt } = await pool.run({ input, started }, { transferList: transferList as ArrayBuffer[], signal: cancelIfQueued.signal })
      fastify.telemetry.recordMergeTiming(Math.max(0, startedAt - submittedAt), finishedAt - startedAt)
      return result
    } catch (error) {
      if (cancelIfQueued.signal.aborted) throw new MergeQueueTimeoutError()
      throw error
    } finally {
      admitted--
      signal.removeEventListener('abort', onAbort)
    }
  }

  function runInline (input: MergeInput): MergeResult {
    const startedAt = performance.now()
    const result = mergeSections(input)
    fastify.telemetry.recordMergeTiming(0, performance.now() - startedAt)
    work.add('tasks')
    work.add('candidatesScored', result.work.candidatesScored)
    work.add('bytesParsed', result.work.bytesParsed)
    work.add('malformedBodies', result.malformed.length)
    return result
  }

  const run: MergeRunner = (input, signal) => {
    // Inline only when configured for it (the benchmark's baseline): handing off costs the loop less at every size.
    if (bodyBytes(input) <= inlineMaxBytes) return Promise.resolve(runInline(input))
    return runInPool(input, signal)
  }

  fastify.telemetry.setMergePoolStateSource(() => ({
    threads: pool.threads.length, queueSize: pool.queueSize, maxQueue, utilization: pool.utilization, work: work.readAll()
  }))

  fastify.decorate<MergePool>('mergePool', {
    run,
    isReady: () => !closing && pool.threads.length > 0,
    get stats () {
      return { threads: pool.threads.length, queueSize: pool.queueSize, maxQueue, utilization: pool.utilization, completed: pool.completed }
    }
  })

  fastify.addHook('onClose', async () => {
    closing = true
    await pool.close()
  })
}, { name: 'merge-pool', dependencies: ['config', 'telemetry'] })
