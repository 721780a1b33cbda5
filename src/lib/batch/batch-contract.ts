import type { AggregateFailure, Aggregator, FetchedItem } from '../aggregate/aggregator.js'
import type { AggregateBody } from '../contract/response.js'

// What the routes see of batches, whichever implementation runs them: in this process (batches.ts) or as BullMQ jobs
// on Redis, shared by every process (distributed-batches.ts).

export const BATCH_STATUSES = ['queued', 'running', 'completed', 'cancelled', 'deadline-exceeded', 'failed'] as const
export type BatchStatus = typeof BATCH_STATUSES[number]

/** A batch that has ended, one way or another: nothing more will be written for it. */
export const isFinished = (status: BatchStatus) => status !== 'queued' && status !== 'running'

/** One line of a batch's results: the aggregate body, or the error it failed with. */
export type BatchResultLine =
  | { index: number, userId: string, status: 'ok' | 'partial', body: AggregateBody }
  | { index: number, userId: string, status: 'failed', error: { statusCode: number, code: string, message: string } }

export interface BatchView {
  id: string
  status: BatchStatus
  total: number
  done: number
  ok: number
  partial: number
  failed: number
  /** Items with at least one retried upstream call. */
  retried: number
  durationMs: number | null
  /** Why it ended as it did, when not `completed`. */
  reason?: string
  stages: { io: { inFlight: number, limit: number }, queue: { size: number, limit: number }, cpu: { busy: number, threads: number } }
}

/** Stage utilisation, sampled twice a second while a batch runs, for the dashboard's chart. */
export interface StageSample { at: number, io: number, queue: number, cpu: number, itemsPerSecond: number }

/** A kept batch as metrics and the dashboard see it: its view and its stage samples. */
export type BatchListing = BatchView & { samples: StageSample[] }

export class BatchRefusedError extends Error {
  readonly code = 'AGG_ERR_BATCHES_FULL'
  readonly statusCode = 503
  constructor (message: string) {
    super(message)
    this.name = 'BatchRefusedError'
  }
}

/** Batches of aggregates, as the routes use them. */
export interface Batches {
  /** Queues a batch of user ids; rejects with {@link BatchRefusedError} when no more can be kept. */
  create (userIds: readonly string[]): Promise<BatchView>
  get (id: string): Promise<BatchView | undefined>
  /**
   * Cancels a queued or running batch: calls in flight are aborted, queued items dropped, running merges not waited
   * for. Resolves with its view once it has ended.
   */
  cancel (id: string): Promise<BatchView | undefined>
  /**
   * The batch's results as NDJSON chunks, from the first line, following them while the batch runs: the caller reads at
   * its own pace (a slow reader pauses this loop, not the batch). Ends when the batch has ended and every line is read,
   * or `signal` aborts.
   */
  results (id: string, signal: AbortSignal): AsyncGenerator<Buffer>
  /**
   * Calls `listener` with the batch's view at once and on every change (at most twice a second while it runs) until it
   * ends; resolves with the function that stops it, or undefined for a batch it does not know.
   */
  follow (id: string, listener: (view: BatchView) => void): Promise<(() => void) | undefined>
  /**
   * Running and recently finished batches, with their stage samples, for metrics and the dashboard: from memory, so a
   * scrape can read it at once. Where batches live in Redis, as last read from there (a read older than half a second
   * starts a new one in the background).
   */
  recent (): BatchListing[]
  /** Stops running batches in this process and lets go of what it holds. */
  close (): Promise<void>
}

// A batch item's merge waits for a thread of the batch pool, behind at most BATCH_CPU_CONCURRENCY others and at low
// priority: a roomy budget.
const MERGE_BUDGET_MS = 10_000

/** Stage 2 of one item: its merge, turned into its result line (a merge that fails is a `failed` line, not a throw). */
export async function mergeToResultLine (aggregator: Pick<Aggregator, 'mergeItem'>, fetched: FetchedItem, index: number, signal: AbortSignal): Promise<BatchResultLine> {
  const { userId } = fetched
  try {
    const body = await aggregator.mergeItem(fetched, { signal, budgetMs: MERGE_BUDGET_MS })
    return { index, userId, status: body.meta.complete ? 'ok' : 'partial', body }
  } catch (error) {
    const failure = error as AggregateFailure
    return { index, userId, status: 'failed', error: { statusCode: failure.statusCode ?? 500, code: failure.code ?? 'AGG_ERR_INTERNAL', message: failure.message } }
  }
}

/** One result line as a batch's stages hand it over: its NDJSON text, and what the batch counts of it. */
export interface StagedLine {
  text: string
  status: BatchResultLine['status']
  retried: boolean
}

/** Whether any upstream call of the item was tried more than once: the view's `retried` counts these. */
export function wasRetried (line: BatchResultLine): boolean {
  return line.status !== 'failed' && Object.values(line.body.meta.upstreams).some((report) => report.attempts > 1)
}

export const stagedLine = (line: BatchResultLine): StagedLine => ({ text: `${JSON.stringify(line)}\n`, status: line.status, retried: wasRetried(line) })
