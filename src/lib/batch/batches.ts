import { randomUUID } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Aggregator, FetchedItem } from '../aggregate/aggregator.js'
import { BatchRefusedError, isFinished, mergeToResultLine, stagedLine, type Batches, type BatchResultLine, type BatchStatus, type BatchView, type StagedLine, type StageSample } from './batch-contract.js'
import { createResultFileWriter, followResultFile, type ResultFileWriter } from './result-file.js'
import { createTwoStagePipeline, type TwoStageStats } from './two-stage-pipeline.js'

/**
 * Runs one batch's two stages, here or elsewhere (a thread of their own: src/batch-thread.ts). `run` resolves
 * once every item's line has been handed to `onLine` (awaited, in order) and rejects with the signal's reason once it
 * aborts; `stats` is the stages' state now.
 */
export type RunStages = (batch: { id: string, userIds: readonly string[] }, options: { signal: AbortSignal, onLine: (line: StagedLine) => Promise<void> }) => {
  run (): Promise<void>
  stats (): StageStats
}

/** What a batch's view shows of its stages (how many are done, the batch counts itself). */
export type StageStats = Omit<TwoStageStats, 'done'>

/** The stages on this event loop: stage 1 the aggregator's fan-out, stage 2 its merge. */
export function runStagesHere (aggregator: Pick<Aggregator, 'fetchItem' | 'mergeItem'>, settings: Pick<BatchSettings, 'ioConcurrency' | 'queueSize' | 'cpuConcurrency' | 'itemTimeoutMs' | 'retries'>): RunStages {
  return (batch, { signal, onLine }) => {
    // Every item in flight (both stages) listens to the batch's signal through its own deadline.
    setMaxListeners(settings.ioConcurrency + settings.queueSize + settings.cpuConcurrency + 10, signal)
    return createTwoStagePipeline<string, FetchedItem, BatchResultLine>({
      items: batch.userIds,
      ioConcurrency: settings.ioConcurrency,
      queueSize: settings.queueSize,
      cpuConcurrency: settings.cpuConcurrency,
      signal,
      io: (userId, index, itemSignal) => aggregator.fetchItem(userId, { signal: itemSignal, requestId: `${batch.id}:${index}`, perTryTimeoutMs: settings.itemTimeoutMs, retries: settings.retries }),
      cpu: (fetched, index, itemSignal) => mergeToResultLine(aggregator, fetched, index, itemSignal),
      onResult: (line) => onLine(stagedLine(line))
    })
  }
}

export interface BatchSettings {
  ioConcurrency: number
  queueSize: number
  cpuConcurrency: number
  itemTimeoutMs: number
  retries: number
  deadlineMs: number
  maxRunning: number
  retainMs: number
  maxRetained: number
  resultsDirectory: string
  maxResultBytes: number
}

const SAMPLE_MS = 500
const MAX_SAMPLES = 1200

interface Batch {
  readonly id: string
  readonly userIds: readonly string[]
  status: BatchStatus
  reason?: string
  readonly createdAt: number
  startedAt?: number
  endedAt?: number
  counts: { done: number, ok: number, partial: number, failed: number, retried: number }
  readonly controller: AbortController
  stages?: { stats (): StageStats }
  readonly file: string
  bytes: number
  samples: StageSample[]
  /** Whoever follows its results or events: told when a line is written or the batch ends. */
  readonly listeners: Set<() => void>
}

/**
 * Batches of aggregates: each runs the two-stage pipeline (stage 1 the fan-out, stage 2 the merge) through
 * `runStages` and writes its results to disk as NDJSON as they complete, so memory stays flat however many there are
 * and a slow reader costs disk, not heap. At most `maxRunning` run at once (the rest wait as `queued`); finished ones are kept for `retainMs`,
 * at most `maxRetained` of them and `maxResultBytes` of results, then forgotten with their file.
 */
export function createBatches (runStages: RunStages, settings: BatchSettings): Batches {
  const batches = new Map<string, Batch>()
  let resultBytes = 0
  const ready = mkdir(settings.resultsDirectory, { recursive: true })

  const notify = (batch: Batch) => { for (const listener of batch.listeners) listener() }

  function view (batch: Batch): BatchView {
    const stats: StageStats = batch.stages?.stats() ?? { io: { inFlight: 0, limit: settings.ioConcurrency }, queue: { size: 0, limit: settings.queueSize }, cpu: { busy: 0, threads: settings.cpuConcurrency } }
    const running = batch.status === 'running'
    const result: BatchView = {
      id: batch.id,
      status: batch.status,
      total: batch.userIds.length,
      ...batch.counts,
      durationMs: batch.startedAt === undefined ? null : Math.round((batch.endedAt ?? performance.now()) - batch.startedAt),
      stages: {
        io: { inFlight: running ? stats.io.inFlight : 0, limit: stats.io.limit },
        queue: { size: running ? stats.queue.size : 0, limit: stats.queue.limit },
        cpu: { busy: running ? stats.cpu.busy : 0, threads: stats.cpu.threads }
      }
    }
    if (batch.reason) result.reason = batch.reason
    return result
  }

  /** Forgets finished batches past their time, and the oldest finished ones beyond the count. */
  async function prune () {
    const now = performance.now()
    const ended = [...batches.values()].filter((batch) => isFinished(batch.status)).sort((left, right) => left.endedAt! - right.endedAt!)
    let excess = batches.size - settings.maxRetained
    for (const batch of ended) {
      if (now - batch.endedAt! < settings.retainMs && excess <= 0) continue
      batches.delete(batch.id)
      resultBytes -= batch.bytes
      excess--
      await rm(batch.file, { force: true })
    }
  }

  function startQueued () {
    let running = [...batches.values()].filter((batch) => batch.status === 'running').length
    for (const batch of batches.values()) {
      if (running >= settings.maxRunning) return
      if (batch.status !== 'queued') continue
      running++
      run(batch).catch(() => {})
    }
  }

  async function run (batch: Batch) {
    batch.status = 'running'
    batch.startedAt = performance.now()
    const { signal } = batch.controller
    const deadline = setTimeout(() => batch.controller.abort(new DOMException('the batch deadline passed', 'TimeoutError')), settings.deadlineMs)
    let writer: ResultFileWriter | undefined
    // Lines appended but not yet written: counted against BATCH_MAX_RESULT_BYTES with the written ones.
    let unwritten = 0
    let lastDone = 0
    const sampler = setInterval(() => {
      const stats = batch.stages?.stats()
      if (!stats) return
      const itemsPerSecond = ((batch.counts.done - lastDone) * 1000) / SAMPLE_MS
      lastDone = batch.counts.done
      batch.samples.push({ at: Date.now(), io: stats.io.inFlight / stats.io.limit, queue: stats.queue.size / stats.queue.limit, cpu: stats.cpu.busy / stats.cpu.threads, itemsPerSecond })
      if (batch.samples.length > MAX_SAMPLES) batch.samples.shift()
      notify(batch)
    }, SAMPLE_MS)
    // Set once every line is written: a reader that sees the batch ended has seen all of it.
    let status: BatchStatus = 'completed'
    let reason: string | undefined
    try {
      await ready
      const file = writer = await createResultFileWriter(batch.file, (bytes) => {
        batch.bytes += bytes
        resultBytes += bytes
        unwritten -= bytes
        notify(batch)
      })
      const stages = runStages(batch, {
        signal,
        onLine: async (line) => {
          const bytes = Buffer.from(line.text)
          if (resultBytes + unwritten + bytes.length > settings.maxResultBytes) throw new BatchRefusedError(`results would exceed BATCH_MAX_RESULT_BYTES (${settings.maxResultBytes})`)
          unwritten += bytes.length
          count(batch, line)
          await file.append(bytes)
        }
      })
      batch.stages = stages
      await stages.run()
      await file.close()
    } catch (error) {
      if (signal.aborted) {
        status = (signal.reason as Error | undefined)?.name === 'TimeoutError' ? 'deadline-exceeded' : 'cancelled'
        reason = (signal.reason as Error | undefined)?.message
      } else {
        status = 'failed'
        reason = (error as Error).message
        batch.controller.abort(error)
      }
    } finally {
      clearTimeout(deadline)
      clearInterval(sampler)
      await writer?.close().catch(() => {})
      batch.status = status
      if (reason !== undefined) batch.reason = reason
      batch.endedAt = performance.now()
      notify(batch)
      startQueued()
    }
  }

  function count (batch: Batch, line: StagedLine) {
    batch.counts.done++
    batch.counts[line.status]++
    if (line.retried) batch.counts.retried++
  }

  return {
    // Refused when every kept batch is still running or queued, or results are full.
    async create (userIds: readonly string[]): Promise<BatchView> {
      await prune()
      if (batches.size >= settings.maxRetained) throw new BatchRefusedError(`${batches.size} batches are running or queued (BATCH_MAX_RETAINED); retry later`)
      if (resultBytes >= settings.maxResultBytes) throw new BatchRefusedError('kept results have reached BATCH_MAX_RESULT_BYTES; retry once older batches are forgotten')
      const id = randomUUID()
      const batch: Batch = {
        id,
        userIds: [...userIds],
        status: 'queued',
        createdAt: performance.now(),
        counts: { done: 0, ok: 0, partial: 0, failed: 0, retried: 0 },
        controller: new AbortController(),
        file: join(settings.resultsDirectory, `${id}.ndjson`),
        bytes: 0,
        samples: [],
        listeners: new Set()
      }
      batches.set(id, batch)
      startQueued()
      return view(batch)
    },

    get: async (id: string): Promise<BatchView | undefined> => {
      const batch = batches.get(id)
      return batch && view(batch)
    },

    // Resolves once the batch has ended, at most a second later.
    async cancel (id: string): Promise<BatchView | undefined> {
      const batch = batches.get(id)
      if (!batch) return undefined
      if (batch.status === 'queued') {
        batch.status = 'cancelled'
        batch.endedAt = performance.now()
        notify(batch)
      } else if (batch.status === 'running') {
        const ended = new Promise<void>((resolve) => {
          const timer = setTimeout(done, 1000)
          function done () { clearTimeout(timer); batch!.listeners.delete(check); resolve() }
          function check () { if (isFinished(batch!.status)) done() }
          batch.listeners.add(check)
        })
        batch.controller.abort(new DOMException('the batch was cancelled', 'AbortError'))
        await ended
      }
      return view(batch)
    },

    // Follows the result file while the batch runs.
    async * results (id: string, signal: AbortSignal): AsyncGenerator<Buffer> {
      const batch = batches.get(id)
      if (!batch) return
      yield * followResultFile(batch.file, {
        written: () => batch.bytes,
        ended: () => isFinished(batch.status),
        changed: () => new Promise<void>((resolve) => {
          const wake = () => { batch.listeners.delete(wake); signal.removeEventListener('abort', wake); resolve() }
          batch.listeners.add(wake)
          signal.addEventListener('abort', wake, { once: true })
        })
      }, signal)
    },

    async follow (id: string, listener: (view: BatchView) => void): Promise<(() => void) | undefined> {
      const batch = batches.get(id)
      if (!batch) return undefined
      let last = 0
      const onChange = () => {
        const now = performance.now()
        if (!isFinished(batch.status) && now - last < SAMPLE_MS) return
        last = now
        listener(view(batch))
      }
      batch.listeners.add(onChange)
      listener(view(batch))
      return () => { batch.listeners.delete(onChange) }
    },

    recent: () => [...batches.values()].map((batch) => ({ ...view(batch), samples: batch.samples })),

    // In process, batches end with the process: every one is cancelled and every result file deleted.
    async close () {
      for (const batch of batches.values()) if (!isFinished(batch.status)) batch.controller.abort(new DOMException('the gateway is shutting down', 'AbortError'))
      await rm(settings.resultsDirectory, { recursive: true, force: true })
    }
  }
}
