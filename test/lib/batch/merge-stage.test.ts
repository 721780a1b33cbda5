import { describe, expect, it } from 'vitest'
import { createMergeStage, type MergeTally } from '../../../src/lib/batch/merge-stage.js'

function deferred () {
  let resolve!: () => void
  const promise = new Promise<void>((_resolve) => { resolve = _resolve })
  return { promise, resolve }
}

const open = () => new AbortController().signal
const settle = () => new Promise((resolve) => setImmediate(resolve))

describe('merge stage (the bounded queue and stage 2 of a process taking batch items)', () => {
  it('runs at most cpuConcurrency merges, queues at most queueSize, and keeps the next caller waiting for room', async () => {
    const stage = createMergeStage({ queueSize: 2, cpuConcurrency: 1 })
    const gate = deferred()
    let running = 0
    let peak = 0
    const task = async () => {
      running++
      peak = Math.max(peak, running)
      await gate.promise
      running--
      return 'merged'
    }
    const tally: MergeTally = { queued: 0, merging: 0 }
    const first = await stage.enqueue(task, { signal: open(), tally })
    const second = await stage.enqueue(task, { signal: open(), tally })
    const third = await stage.enqueue(task, { signal: open(), tally })
    let fourthQueued = false
    const fourth = stage.enqueue(task, { signal: open(), tally }).then((queued) => { fourthQueued = true; return queued })
    await settle()
    expect(stage.stats()).toEqual({ queue: { size: 2, limit: 2 }, cpu: { busy: 1, threads: 1 } })
    expect(tally).toEqual({ queued: 2, merging: 1 })
    expect(fourthQueued, 'a caller finding the queue full waits for room').toBe(false)
    gate.resolve()
    const outcomes = await Promise.all([first.outcome, second.outcome, third.outcome, (await fourth).outcome])
    expect(outcomes).toEqual(['merged', 'merged', 'merged', 'merged'])
    expect(peak).toBe(1)
    expect(stage.stats()).toEqual({ queue: { size: 0, limit: 2 }, cpu: { busy: 0, threads: 1 } })
    expect(tally).toEqual({ queued: 0, merging: 0 })
  })

  it('lets waiters in first come, first served, as merges finish', async () => {
    const stage = createMergeStage({ queueSize: 1, cpuConcurrency: 1 })
    const order: number[] = []
    const gates = [deferred(), deferred(), deferred(), deferred()]
    const queued = gates.map((gate, index) => stage.enqueue(async () => { order.push(index); await gate.promise }, { signal: open() }))
    await settle()
    for (const gate of gates) {
      gate.resolve()
      await settle()
    }
    await Promise.all((await Promise.all(queued)).map((entry) => entry.outcome))
    expect(order).toEqual([0, 1, 2, 3])
  })

  it('drops a queued merge whose signal aborts, and lets a caller waiting for room go, without running either', async () => {
    const stage = createMergeStage({ queueSize: 1, cpuConcurrency: 1 })
    const gate = deferred()
    const ran: string[] = []
    await stage.enqueue(async () => { ran.push('running'); await gate.promise }, { signal: open() })
    const queuedController = new AbortController()
    const tally: MergeTally = { queued: 0, merging: 0 }
    const queued = await stage.enqueue(async () => { ran.push('queued') }, { signal: queuedController.signal, tally })
    const waitingController = new AbortController()
    const waiting = stage.enqueue(async () => { ran.push('waiting') }, { signal: waitingController.signal })
    waitingController.abort(new Error('batch cancelled'))
    await expect(waiting).rejects.toThrow('batch cancelled')
    queuedController.abort(new Error('batch cancelled'))
    await expect(queued.outcome).rejects.toThrow('batch cancelled')
    expect(tally).toEqual({ queued: 0, merging: 0 })
    gate.resolve()
    await settle()
    expect(ran).toEqual(['running'])
    expect(stage.stats().queue.size).toBe(0)
  })

  it('refuses sizes that are not whole numbers of at least one', () => {
    expect(() => createMergeStage({ queueSize: 0, cpuConcurrency: 1 })).toThrow('Expected queueSize to be an integer >= 1, got 0')
    expect(() => createMergeStage({ queueSize: 1, cpuConcurrency: 1.5 })).toThrow('Expected cpuConcurrency to be an integer >= 1, got 1.5')
  })
})
