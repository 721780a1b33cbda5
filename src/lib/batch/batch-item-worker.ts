import { randomUUID } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { Worker, type Job } from 'bullmq'
import type { Aggregator, FetchedItem } from '../aggregate/aggregator.js'
import { mergeToResultLine, wasRetried, type BatchResultLine, type BatchStatus } from './batch-contract.js'
import { createBatchStore, logConnectionErrors, STAGE_REPORT_MS } from './batch-store.js'
import { ITEM_JOB_ATTEMPTS, ITEM_QUEUE, type ItemJobData } from './distributed-batches.js'
import { createMergeStage, type MergeTally } from './merge-stage.js'

export interface BatchItemWorkerOptions {
  redisUrl: string
  /** Stage 1 of this process: item jobs it holds at once, each fetching one item at a time. */
  ioConcurrency: number
  /** The bounded queue and stage 2 of this process: fetched items waiting for a merge, merges at once. */
  queueSize: number
  cpuConcurrency: number
  itemTimeoutMs: number
  retries: number
  /** How long a job's lock lasts without renewal: a process that stops renewing it loses its jobs to the others. */
  lockDurationMs: number
  /** How often this process looks for jobs whose lock has expired (BullMQ's stalled-job check). */
  stalledIntervalMs: number
  retainMs: number
  maxResultBytes: number
  aggregator: Pick<Aggregator, 'fetchItem' | 'mergeItem'>
  logger: { warn (details: object, message: string): void }
}

// A job taken this many times by processes that stopped before finishing it is not tried again: its items left get a
// failed line, so one item that kills its process cannot stall the batch or take every process down in turn.
export const MAX_ITEM_JOB_STARTS = 5
// BullMQ fails a job that stalls more than this; we count starts ourselves (above), so BullMQ never should.
const STALLS_TOLERATED = 1000
// Ended batches remembered, so that a job claimed as its batch ended does not start it again here.
const REMEMBERED_ENDS = 1000

/** What this process holds of one batch, and the signal that stops it. */
interface HeldBatch {
  readonly id: string
  readonly controller: AbortController
  readonly deadline: NodeJS.Timeout
  jobs: number
  fetching: number
  readonly tally: MergeTally
  reported: boolean
}

/**
 * Takes batch items from Redis (BullMQ jobs on the item queue) in this process: each job is a run of items fetched one
 * after another (stage 1: at most `ioConcurrency` jobs at once, so as many upstream calls per upstream; BullMQ's global
 * concurrency bounds the jobs of every process together), each fetched item handed to the merge stage (a bounded queue
 * of `queueSize` that pauses the job when full, and `cpuConcurrency` merges on the pool), its line written to Redis once.
 * A job completes only when every line it owes is written, so a process that dies loses nothing: its jobs' locks lapse,
 * another process takes them again and redoes only the items without a line. A batch that ends (cancelled, past its
 * deadline) is announced on a channel; every process aborts its items of it at once.
 */
export function createBatchItemWorker (options: BatchItemWorkerOptions) {
  const { aggregator, logger } = options
  const store = createBatchStore(options)
  const stage = createMergeStage({ queueSize: options.queueSize, cpuConcurrency: options.cpuConcurrency })
  const processId = randomUUID()
  const held = new Map<string, HeldBatch>()

  // Batches heard to have ended, newest last: a job claimed just before its batch ended must not start it again here.
  const endedBatches = new Set<string>()

  /** A batch has ended (whichever process ended it): its items here are aborted at once, and none is started again. */
  function stopBatch (id: string, status: BatchStatus) {
    endedBatches.add(id)
    if (endedBatches.size > REMEMBERED_ENDS) endedBatches.delete(endedBatches.values().next().value!)
    const batch = held.get(id)
    if (!batch) return
    clearTimeout(batch.deadline)
    held.delete(id)
    batch.controller.abort(status === 'deadline-exceeded'
      ? new DOMException('the batch deadline passed', 'TimeoutError')
      : new DOMException(`the batch has ended (${status})`, 'AbortError'))
  }

  const stopListening = store.onEnded(stopBatch)

  /**
   * This process's hold on a running batch, created with a timer for its deadline on the first job taken; undefined
   * for a batch it has heard has ended.
   */
  function hold (id: string, remainingMs: number): HeldBatch | undefined {
    if (endedBatches.has(id)) return undefined
    const existing = held.get(id)
    if (existing) return existing
    const batch: HeldBatch = {
      id,
      controller: new AbortController(),
      deadline: setTimeout(() => {
        store.end(id, 'deadline-exceeded', 'the batch deadline passed').catch((error: unknown) => logger.warn({ err: error, batchId: id }, 'could not end a batch past its deadline'))
        stopBatch(id, 'deadline-exceeded')
      }, remainingMs),
      jobs: 0,
      fetching: 0,
      tally: { queued: 0, merging: 0 },
      reported: false
    }
    // Every item this process holds listens to it: one fetching per job, one per queued or running merge.
    setMaxListeners(2 * (options.ioConcurrency + options.queueSize + options.cpuConcurrency), batch.controller.signal)
    held.set(id, batch)
    return batch
  }

  async function processJob (job: Job<ItemJobData>): Promise<void> {
    const { batchId, first, userIds } = job.data
    const claim = await store.claim(batchId, first, userIds.length)
    if (claim.status !== 'running') return
    const batch = hold(batchId, claim.remainingMs)
    if (!batch) return
    const { signal } = batch.controller
    const abandoned = job.attemptsStarted > MAX_ITEM_JOB_STARTS
    const writes: Array<Promise<unknown>> = []
    batch.jobs++
    try {
      for (let offset = 0; offset < userIds.length && !signal.aborted; offset++) {
        if (claim.recorded[offset]) continue
        const index = first + offset
        const userId = userIds[offset]!
        if (abandoned) {
          writes.push(record(batchId, abandonedLine(index, userId, job.attemptsStarted)))
          continue
        }
        batch.fetching++
        let fetched: FetchedItem
        try {
          fetched = await aggregator.fetchItem(userId, { signal, requestId: `${batchId}:${index}`, perTryTimeoutMs: options.itemTimeoutMs, retries: options.retries })
        } finally {
          batch.fetching--
        }
        let queued: { outcome: Promise<BatchResultLine> }
        try {
          queued = await stage.enqueue(() => mergeToResultLine(aggregator, fetched, index, signal), { signal, tally: batch.tally })
        } catch (error) {
          if (signal.aborted) break
          throw error
        }
        writes.push(queued.outcome.then((line) => record(batchId, line)))
      }
      const settled = await Promise.allSettled(writes)
      if (signal.aborted) return
      const failure = settled.find((outcome) => outcome.status === 'rejected')
      // A line that could not be written (Redis unreachable): BullMQ tries the job again; the lines written stay.
      if (failure) throw failure.reason
    } finally {
      batch.jobs--
    }
  }

  /** Writes a line; a batch found ended on the way stops here at once, even before its message arrives. */
  async function record (batchId: string, line: BatchResultLine) {
    const outcome = await store.record(batchId, line, wasRetried(line))
    if (outcome !== 'written' && outcome !== 'duplicate') stopBatch(batchId, outcome === 'missing' ? 'cancelled' : outcome)
  }

  const worker = new Worker<ItemJobData>(ITEM_QUEUE, processJob, {
    connection: { url: options.redisUrl, maxRetriesPerRequest: null },
    concurrency: options.ioConcurrency,
    lockDuration: options.lockDurationMs,
    stalledInterval: options.stalledIntervalMs,
    maxStalledCount: STALLS_TOLERATED
  })
  logConnectionErrors(worker, logger, 'batch item worker')
  // A job out of tries (its lines could not be written ITEM_JOB_ATTEMPTS times): its items left fail, so the batch can end.
  worker.on('failed', (job, error) => {
    if (!job || job.attemptsMade < (job.opts.attempts ?? ITEM_JOB_ATTEMPTS)) return
    const { batchId, first, userIds } = job.data
    const lines = userIds.map((userId, offset): BatchResultLine => ({ index: first + offset, userId, status: 'failed', error: { statusCode: 500, code: 'AGG_ERR_BATCH_ITEM_FAILED', message: error.message } }))
    Promise.all(lines.map((line) => record(batchId, line))).catch((recordError: unknown) => logger.warn({ err: recordError, batchId }, 'could not write the failed lines of a batch item job'))
  })

  // Twice a second, what this process holds of each running batch, for GET /batches/:id from any gateway.
  const reporter = setInterval(() => {
    for (const batch of held.values()) {
      const active = batch.jobs > 0
      if (!active && !batch.reported) continue
      batch.reported = active
      const report = active ? { fetching: batch.fetching, queued: batch.tally.queued, merging: batch.tally.merging, ioLimit: options.ioConcurrency, queueLimit: options.queueSize, cpuLimit: options.cpuConcurrency } : undefined
      store.report(batch.id, processId, report).catch(() => {})
    }
  }, STAGE_REPORT_MS)
  reporter.unref()

  return {
    /** Takes no more jobs, finishes those it holds (their lines are written) if Redis is up, then lets go of Redis. */
    async close () {
      clearInterval(reporter)
      // BullMQ's graceful close waits for Redis forever; with Redis down the lines could not be written anyway, and the
      // jobs held are taken again by another process once their locks lapse.
      await worker.close(store.redis.status !== 'ready')
      for (const batch of held.values()) clearTimeout(batch.deadline)
      held.clear()
      await stopListening()
      await store.close()
    }
  }
}

export type BatchItemWorker = ReturnType<typeof createBatchItemWorker>

function abandonedLine (index: number, userId: string, starts: number): BatchResultLine {
  return { index, userId, status: 'failed', error: { statusCode: 500, code: 'AGG_ERR_BATCH_ITEM_ABANDONED', message: `taken ${starts - 1} times by processes that stopped before finishing it` } }
}
