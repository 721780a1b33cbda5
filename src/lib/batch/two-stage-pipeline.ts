import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Two stages with a bounded queue between them: stage 1 runs `io` on at most `ioConcurrency` items at once (waiting
 * on the network: concurrency on one thread), stage 2 runs `cpu` on at most `cpuConcurrency` fetched items at once
 * (the worker pool: parallelism), and a full queue pauses stage 1 instead of growing. `onResult` is awaited, so a slow
 * consumer pauses stage 2 too. Aborting the signal stops both stages at once: nothing new starts, queued items are
 * dropped, and running work is not waited for (its results are discarded). Hand-written: p-limit and p-queue bound one
 * stage each, but neither has a bounded hand-off that pauses the stage before it.
 */

export interface TwoStageOptions<Item, Fetched, Result> {
  items: readonly Item[]
  io: (item: Item, index: number, signal: AbortSignal) => Promise<Fetched>
  cpu: (fetched: Fetched, index: number, signal: AbortSignal) => Promise<Result>
  onResult: (result: Result, index: number) => Promise<void> | void
  ioConcurrency: number
  queueSize: number
  cpuConcurrency: number
  signal: AbortSignal
}

export interface TwoStageStats {
  io: { inFlight: number, limit: number }
  queue: { size: number, limit: number }
  cpu: { busy: number, threads: number }
  done: number
}

// How long stage 1 takes to open all its slots.
const RAMP_MS = 500

export function createTwoStagePipeline<Item, Fetched, Result> (options: TwoStageOptions<Item, Fetched, Result>) {
  const { items, io, cpu, onResult, ioConcurrency, queueSize, cpuConcurrency, signal } = options
  const queue: Array<{ fetched: Fetched, index: number }> = []
  let next = 0
  let ioInFlight = 0
  let cpuBusy = 0
  let done = 0
  let fetchersLeft = Math.min(ioConcurrency, items.length)
  // Whoever waits for room in the queue (stage 1) or for an item in it (stage 2).
  let roomWaiters: Array<() => void> = []
  let itemWaiters: Array<() => void> = []
  const wake = (waiters: Array<() => void>) => { for (const resolve of waiters.splice(0)) resolve() }
  const aborted = new Promise<never>((_resolve, reject) => {
    const onAbort = () => {
      queue.length = 0
      wake(roomWaiters)
      wake(itemWaiters)
      reject(signal.reason)
    }
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
  })
  aborted.catch(() => {})

  async function fetcher (_: unknown, slot: number) {
    try {
      // Slots open one after another over RAMP_MS, not all at once: a cold start of BATCH_IO_CONCURRENCY × upstreams
      // new connections in the same instant timed the whole first wave out and opened every circuit. (2 s at first; 500 ms
      // since the mocks and the batch merges cost less, with no timeout on a cold start; half the ramp is lost time.)
      const rampMs = (slot / fetchersLeft) * RAMP_MS
      if (rampMs > 0) await sleep(rampMs, undefined, { signal }).catch(() => {})
      while (!signal.aborted && next < items.length) {
        const index = next++
        ioInFlight++
        let fetched: Fetched
        try {
          fetched = await io(items[index]!, index, signal)
        } finally {
          ioInFlight--
        }
        while (!signal.aborted && queue.length >= queueSize) await new Promise<void>((resolve) => roomWaiters.push(resolve))
        if (signal.aborted) return
        queue.push({ fetched, index })
        wake(itemWaiters)
      }
    } finally {
      if (--fetchersLeft === 0) wake(itemWaiters)
    }
  }

  async function merger () {
    while (!signal.aborted) {
      const entry = queue.shift()
      if (entry === undefined) {
        if (fetchersLeft === 0) return
        await new Promise<void>((resolve) => itemWaiters.push(resolve))
        continue
      }
      wake(roomWaiters)
      cpuBusy++
      let result: Result
      try {
        result = await cpu(entry.fetched, entry.index, signal)
      } finally {
        cpuBusy--
      }
      if (signal.aborted) return
      await onResult(result, entry.index)
      done++
    }
  }

  return {
    /** Resolves when every item has a result; rejects with the signal's reason once it aborts, without waiting. */
    run (): Promise<void> {
      const work = Promise.all([
        ...Array.from({ length: fetchersLeft }, fetcher),
        ...Array.from({ length: Math.max(1, cpuConcurrency) }, merger)
      ]).then(() => {
        roomWaiters = []
        itemWaiters = []
      })
      return Promise.race([work, aborted])
    },
    stats: (): TwoStageStats => ({
      io: { inFlight: ioInFlight, limit: ioConcurrency },
      queue: { size: queue.length, limit: queueSize },
      cpu: { busy: cpuBusy, threads: cpuConcurrency },
      done
    })
  }
}
