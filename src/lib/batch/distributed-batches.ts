import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Queue } from 'bullmq'
import { BatchStoreUnavailableError } from '../../errors.js'
import { BatchRefusedError, isFinished, type BatchListing, type Batches, type BatchView } from './batch-contract.js'
import { createBatchStore, logConnectionErrors, STAGE_REPORT_MS, type StoredBatch } from './batch-store.js'

/** The BullMQ queue every process takes batch items from. */
export const ITEM_QUEUE = 'aggregator-batch-items'

/** What an item job carries: a run of consecutive items of one batch. */
export interface ItemJobData {
  batchId: string
  /** Index of its first item in the batch. */
  first: number
  userIds: string[]
}

export interface DistributedBatchSettings {
  redisUrl: string
  /** Items fetching at once across every process: BullMQ's global concurrency on the item queue. */
  globalIoConcurrency: number
  /** Most items in one job. */
  itemsPerJob: number
  queueSize: number
  cpuConcurrency: number
  deadlineMs: number
  retainMs: number
  maxRetained: number
  maxResultBytes: number
  logger: { warn (details: object, message: string): void }
}

// Jobs added per round trip; each is a script call inside one MULTI.
const JOBS_PER_ADD = 500
// How often a results reader looks for new lines when it has read every line written so far.
const RESULTS_POLL_MS = 100
// Tries of an item job whose processing throws (Redis unreachable while writing a line, say); the lines it wrote stay.
export const ITEM_JOB_ATTEMPTS = 3

/**
 * How many items go in one job: at most `itemsPerJob`, and few enough that every slot of the global concurrency gets
 * about four jobs, so a small batch still spreads over every process and slot.
 */
export function itemsPerJobFor (total: number, { itemsPerJob, globalIoConcurrency }: Pick<DistributedBatchSettings, 'itemsPerJob' | 'globalIoConcurrency'>): number {
  return Math.max(1, Math.min(itemsPerJob, Math.ceil(total / (globalIoConcurrency * 4))))
}

/**
 * Batches shared by every process on one Redis: the `Batches` the routes use, answered from Redis, so any gateway can
 * create, read, follow, cancel and stream any batch. A batch's items are BullMQ jobs on {@link ITEM_QUEUE}, taken by
 * whichever processes run a batch item worker (batch-item-worker.ts); this side never runs an item itself.
 */
export function createDistributedBatches (settings: DistributedBatchSettings): Batches {
  const store = createBatchStore(settings)
  const queue = new Queue<ItemJobData>(ITEM_QUEUE, { connection: { url: settings.redisUrl, maxRetriesPerRequest: 1 } })
  logConnectionErrors(queue, settings.logger, 'batch item queue')

  function view (id: string, batch: StoredBatch): BatchView {
    const running = batch.status === 'running'
    const reports = running ? batch.stages : []
    const sum = (pick: (report: StoredBatch['stages'][number]) => number) => reports.reduce((total, report) => total + pick(report), 0)
    const result: BatchView = {
      id,
      status: batch.status,
      total: batch.total,
      done: batch.done,
      ok: batch.ok,
      partial: batch.partial,
      failed: batch.failed,
      retried: batch.retried,
      durationMs: batch.startedAt === undefined ? null : (batch.endedAt ?? batch.now) - batch.startedAt,
      // Summed over the processes holding the batch's items now; while none does, this process's own limits.
      stages: {
        io: { inFlight: sum((report) => report.fetching), limit: reports.length === 0 ? settings.globalIoConcurrency : Math.min(settings.globalIoConcurrency, sum((report) => report.ioLimit)) },
        queue: { size: sum((report) => report.queued), limit: reports.length === 0 ? settings.queueSize : sum((report) => report.queueLimit) },
        cpu: { busy: sum((report) => report.merging), threads: reports.length === 0 ? settings.cpuConcurrency : sum((report) => report.cpuLimit) }
      }
    }
    if (batch.reason !== undefined) result.reason = batch.reason
    return result
  }

  // What recent() answers: the kept batches as last read from Redis (no stage samples: those are per process).
  const listing: { batches: BatchListing[], readAt: number, reading: boolean } = { batches: [], readAt: -Infinity, reading: false }
  let closed = false
  function readListing () {
    listing.reading = true
    store.ids()
      .then(async (ids) => await Promise.all(ids.map((id) => get(id))))
      .then((views) => { listing.batches = views.filter((batch): batch is BatchView => batch !== undefined).map((batch) => ({ ...batch, samples: [] })) }, () => {})
      .finally(() => { listing.reading = false; listing.readAt = performance.now() })
  }

  async function get (id: string): Promise<BatchView | undefined> {
    const batch = await store.read(id)
    return batch && view(id, batch)
  }

  /** Forgets batches whose records have expired, and the oldest finished ones beyond `maxRetained`; says what is kept. */
  async function prune (): Promise<{ kept: number, bytes: number }> {
    const ids = await store.ids()
    const batches = await Promise.all(ids.map(async (id) => ({ id, batch: await store.read(id) })))
    let kept = batches.length
    let bytes = 0
    for (const { id, batch } of batches) {
      if (batch === undefined) {
        await store.forget(id)
        kept--
      } else if (kept >= settings.maxRetained && isFinished(batch.status)) {
        await store.forget(id)
        kept--
      } else {
        bytes += batch.bytes
      }
    }
    return { kept, bytes }
  }

  /** Turns a Redis or BullMQ failure into a 503 a client can act on; our own coded errors pass through. */
  async function reachingStore<T> (work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      if ((error as { code?: string }).code?.startsWith('AGG_ERR_')) throw error
      throw new BatchStoreUnavailableError((error as Error).message)
    }
  }

  return {
    create: (userIds) => reachingStore(async () => {
      const { kept, bytes } = await prune()
      if (kept >= settings.maxRetained) throw new BatchRefusedError(`${kept} batches are running or queued (BATCH_MAX_RETAINED); retry later`)
      if (bytes >= settings.maxResultBytes) throw new BatchRefusedError('kept results have reached BATCH_MAX_RESULT_BYTES; retry once older batches are forgotten')
      // On every batch, so a Redis that lost its data (or another gateway's older setting) is put right.
      await queue.setGlobalConcurrency(settings.globalIoConcurrency)
      const id = randomUUID()
      await store.create(id, userIds.length, settings.deadlineMs)
      const size = itemsPerJobFor(userIds.length, settings)
      const jobs = []
      for (let first = 0; first < userIds.length; first += size) {
        jobs.push({
          name: 'items',
          data: { batchId: id, first, userIds: userIds.slice(first, first + size) },
          // The id makes adding a job twice harmless; finished jobs leave nothing behind (results live in the batch).
          opts: { jobId: `${id}-${first}`, attempts: ITEM_JOB_ATTEMPTS, backoff: { type: 'exponential', delay: 500 }, removeOnComplete: true, removeOnFail: true }
        })
      }
      try {
        for (let start = 0; start < jobs.length; start += JOBS_PER_ADD) await queue.addBulk(jobs.slice(start, start + JOBS_PER_ADD))
      } catch (error) {
        // Some items may be queued and others not: the batch could never complete, so it fails now.
        await store.end(id, 'failed', `its items could not all be queued: ${(error as Error).message}`).catch(() => {})
        throw error
      }
      const created = await get(id)
      if (!created) throw new Error(`batch ${id} vanished as it was created`)
      return created
    }),

    get: (id) => reachingStore(() => get(id)),

    // Ended in Redis at once; every process holding its items hears of it on the channel and aborts them.
    cancel: (id) => reachingStore(async () => {
      await store.end(id, 'cancelled', 'the batch was cancelled')
      return await get(id)
    }),

    async * results (id, signal) {
      let position = 0
      while (!signal.aborted) {
        // The status first: once it says ended, the lines written before it are all there is.
        const batch = await store.read(id)
        if (!batch) return
        const { lines, read } = await store.lines(id, position, 256)
        if (read > 0) {
          position += read
          if (lines.length > 0) yield Buffer.from(`${lines.join('\n')}\n`)
          continue
        }
        if (isFinished(batch.status)) return
        await sleep(RESULTS_POLL_MS, undefined, { signal }).catch(() => {})
      }
    },

    async follow (id, listener) {
      const first = await reachingStore(() => get(id))
      if (!first) return undefined
      listener(first)
      const stopped = new AbortController()
      // Polled, as every gateway can: the batch's items run in other processes.
      async function poll () {
        while (!stopped.signal.aborted) {
          await sleep(STAGE_REPORT_MS, undefined, { signal: stopped.signal }).catch(() => {})
          if (stopped.signal.aborted) return
          const current = await get(id).catch(() => undefined)
          if (!current || stopped.signal.aborted) continue
          listener(current)
          if (isFinished(current.status)) return
        }
      }
      if (!isFinished(first.status)) poll().catch(() => {})
      return () => stopped.abort()
    },

    recent () {
      if (!closed && !listing.reading && performance.now() - listing.readAt >= STAGE_REPORT_MS) readListing()
      return listing.batches
    },

    // Batches belong to every process on the Redis: closing one gateway cancels none of them.
    async close () {
      closed = true
      await queue.close().catch(() => {})
      await store.close()
    }
  }
}
