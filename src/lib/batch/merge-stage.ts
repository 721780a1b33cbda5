/** Counts one caller's items (a batch's, say) as they pass through the stage; the stage keeps it up to date. */
export interface MergeTally {
  queued: number
  merging: number
}

/**
 * Stage 2 of a process that takes batch items from Redis, and the bounded queue in front of it: at most `queueSize`
 * fetched items wait, at most `cpuConcurrency` merge at once. {@link MergeStage.enqueue} resolves once an item is in
 * the queue, so a caller that fetches, enqueues and fetches again is paused by a full queue, as stage 1 is in process.
 * Hand-written: two-stage-pipeline.ts owns its items up front and cannot take them one job at a time, and p-limit and
 * p-queue bound one stage each, with no bounded hand-off that pauses the stage before it.
 */
export interface MergeStage {
  /**
   * Waits for room in the queue, then queues `task` for a merge slot. Resolves once queued, with the task's outcome
   * to await separately; rejects with `signal.reason` if the signal aborts first. A queued task whose signal aborts is
   * dropped (its outcome rejects with the reason); a running one is never interrupted.
   */
  enqueue<T>(task: () => Promise<T>, options: { signal: AbortSignal, tally?: MergeTally }): Promise<{ outcome: Promise<T> }>
  stats (): { queue: { size: number, limit: number }, cpu: { busy: number, threads: number } }
}

interface Entry {
  /** Moves it from waiting for room into the queue. */
  admit (): void
  /** Takes a merge slot and starts its task. */
  start (): void
}

/** A {@link MergeStage} of `queueSize` waiting and `cpuConcurrency` running; throws a TypeError for other sizes. */
export function createMergeStage ({ queueSize, cpuConcurrency }: { queueSize: number, cpuConcurrency: number }): MergeStage {
  if (!Number.isInteger(queueSize) || queueSize < 1) throw new TypeError(`Expected queueSize to be an integer >= 1, got ${queueSize}`)
  if (!Number.isInteger(cpuConcurrency) || cpuConcurrency < 1) throw new TypeError(`Expected cpuConcurrency to be an integer >= 1, got ${cpuConcurrency}`)
  const roomWaiters: Entry[] = []
  const queue: Entry[] = []
  let busy = 0

  // Every move happens here, synchronously, so no two callers can take the same slot or the same room.
  function pump () {
    for (;;) {
      if (busy < cpuConcurrency && queue.length > 0) queue.shift()!.start()
      else if (queue.length < queueSize && roomWaiters.length > 0) roomWaiters.shift()!.admit()
      else return
    }
  }

  function enqueue<T> (task: () => Promise<T>, { signal, tally }: { signal: AbortSignal, tally?: MergeTally }): Promise<{ outcome: Promise<T> }> {
    if (signal.aborted) return Promise.reject(signal.reason)
    return new Promise((resolve, reject) => {
      const settle = deferred<T>()
      const { promise: outcome } = settle
      outcome.catch(() => {})
      let place: 'room' | 'queue' | 'running' = 'room'
      const entry: Entry = {
        admit () {
          place = 'queue'
          queue.push(entry)
          if (tally) tally.queued++
          resolve({ outcome })
        },
        start () {
          place = 'running'
          busy++
          signal.removeEventListener('abort', onAbort)
          if (tally) { tally.queued--; tally.merging++ }
          Promise.resolve().then(task).then(settle.resolve, settle.reject).finally(() => {
            busy--
            if (tally) tally.merging--
            pump()
          })
        }
      }
      function onAbort () {
        if (place === 'room') {
          roomWaiters.splice(roomWaiters.indexOf(entry), 1)
          reject(signal.reason)
        } else if (place === 'queue') {
          queue.splice(queue.indexOf(entry), 1)
          if (tally) tally.queued--
          settle.reject(signal.reason)
        }
        pump()
      }
      signal.addEventListener('abort', onAbort, { once: true })
      roomWaiters.push(entry)
      pump()
    })
  }

  return {
    enqueue,
    stats: () => ({ queue: { size: queue.length, limit: queueSize }, cpu: { busy, threads: cpuConcurrency } })
  }
}

/** A promise with its settling functions (Promise.withResolvers, from Node 22). */
function deferred<T> () {
  let settle!: { resolve: (value: T) => void, reject: (reason: unknown) => void }
  const promise = new Promise<T>((resolve, reject) => { settle = { resolve, reject } })
  return { promise, ...settle }
}
