import { Worker } from 'node:worker_threads'
import type { Config } from '../config.js'
import type { StagedLine } from '../lib/batch/batch-contract.js'
import type { RunStages } from '../lib/batch/batches.js'
import { channels, type MergeMessage } from '../lib/contract/events.js'
import { threadEntry, type MergeWorkerEntry } from './merge-pool.js'

export interface BatchThreadData {
  variables: Readonly<Record<string, string>>
  registryModule: string
  mergeWorker?: MergeWorkerEntry
  /** The gateway's merge-work counters: the thread's merges are counted with its own. */
  workCounters?: SharedArrayBuffer
}
export type ToBatchThread =
  | { type: 'run', id: string, userIds: string[], stats: SharedArrayBuffer }
  | { type: 'cancel', id: string, name: string, message: string }
  | { type: 'written', id: string }
  | { type: 'close' }
export type FromBatchThread =
  | { type: 'ready' }
  | { type: 'line', id: string, line: StagedLine }
  | { type: 'end', id: string, error?: string }
  | { type: 'merges', merges: MergeMessage[] }

/**
 * The main thread's side of the batch thread (BATCH_ON_THREAD, src/batch-thread.ts), started by `warmUp` or the first
 * batch: {@link RunStages} whose stages run there. Cancellation and the deadline reach it as a message; each line comes
 * back to be written here, and is acknowledged once written (the thread pauses past 256 unwritten lines). `mergeWorker`
 * (tests pass a compiled one) says where the compiled modules are: the thread's entry is src/batch-thread beside its folder.
 */
export function createBatchThreadRunner (config: Config, { mergeWorker, workCounters }: { mergeWorker?: MergeWorkerEntry, workCounters?: SharedArrayBuffer } = {}) {
  const entry = mergeWorker
    ? { filename: new URL('../batch-thread.js', mergeWorker.filename).href, execArgv: mergeWorker.execArgv }
    : threadEntry('../batch-thread')
  let starting: Promise<Worker> | undefined
  const thread = () => {
    starting ??= new Promise((resolve, reject) => {
      const worker = new Worker(new URL(entry.filename), {
        execArgv: entry.execArgv,
        workerData: { variables: config.variables, registryModule: config.registry.module, mergeWorker, workCounters } satisfies BatchThreadData
      })
      worker.once('message', () => { worker.off('error', reject); resolve(worker) })
      // The thread's merges join the gateway's in its merge histograms, as if they had run here.
      worker.on('message', (message: FromBatchThread) => {
        if (message.type === 'merges' && channels.merge.hasSubscribers) for (const merge of message.merges) channels.merge.publish(merge)
      })
      worker.once('error', reject)
      // A thread that died (its batches failed with it) is replaced by the next batch.
      worker.once('exit', () => { starting = undefined })
    })
    return starting
  }

  const runStages: RunStages = (batch, { signal, onLine }) => {
    const stats = new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT))
    return {
      stats: () => ({
        io: { inFlight: Atomics.load(stats, 0), limit: config.batch.ioConcurrency },
        queue: { size: Atomics.load(stats, 1), limit: config.batch.queueSize },
        cpu: { busy: Atomics.load(stats, 2), threads: config.batch.cpuConcurrency }
      }),
      run: async () => {
        // The thread starts with the first batch (seconds on a busy machine): a cancel or deadline meanwhile ends it.
        const worker = await new Promise<Worker>((resolve, reject) => {
          const onAbort = () => reject(signal.reason)
          if (signal.aborted) return onAbort()
          signal.addEventListener('abort', onAbort, { once: true })
          thread().then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
        })
        const post = (message: ToBatchThread) => worker.postMessage(message)
        await new Promise<void>((resolve, reject) => {
          if (signal.aborted) return reject(signal.reason)
          let writing = Promise.resolve()
          // Set once a line could not be written: the batch has failed, later lines are dropped.
          let failed = false
          const onAbort = () => {
            const reason = signal.reason as Error | undefined
            post({ type: 'cancel', id: batch.id, name: reason?.name ?? 'AbortError', message: reason?.message ?? 'aborted' })
          }
          const onExit = () => reject(new Error('the batch thread stopped'))
          const onMessage = (message: FromBatchThread) => {
            if (message.type === 'ready' || message.type === 'merges' || message.id !== batch.id) return
            if (message.type === 'line') {
              writing = writing.then(async () => {
                if (signal.aborted || failed) return
                await onLine(message.line)
                post({ type: 'written', id: batch.id })
              }).catch((error: unknown) => {
                // A line that cannot be written (results full, disk) fails the batch, as it would in process.
                failed = true
                post({ type: 'cancel', id: batch.id, name: 'Error', message: (error as Error).message })
                reject(error)
              })
              return
            }
            worker.off('message', onMessage)
            worker.off('exit', onExit)
            signal.removeEventListener('abort', onAbort)
            // After the lines before it: a batch ends once every line it sent is written.
            writing.then(() => {
              if (signal.aborted) reject(signal.reason)
              else if (message.error !== undefined) reject(new Error(message.error))
              else resolve()
            })
          }
          worker.on('message', onMessage)
          worker.once('exit', onExit)
          signal.addEventListener('abort', onAbort, { once: true })
          post({ type: 'run', id: batch.id, userIds: [...batch.userIds], stats: stats.buffer as SharedArrayBuffer })
        })
      }
    }
  }

  return {
    runStages,
    /** Starts the thread ahead of the first batch, which would otherwise wait for it (most of a second); a thread that fails to start is tried again by the next batch. */
    async warmUp () { await thread() },
    /** Closes the thread's clients and pool, then the thread; a thread never started is left alone. */
    async close () {
      if (!starting) return
      const worker = await starting.catch(() => undefined)
      if (!worker) return
      const exited = new Promise((resolve) => worker.once('exit', resolve))
      worker.postMessage({ type: 'close' } satisfies ToBatchThread)
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())])
      await worker.terminate()
    }
  }
}
