import { describe, expect, it } from 'vitest'
import { BulkheadRejectedError, createBulkhead } from '../../../src/lib/resilience/bulkhead.js'

function deferred () {
  let resolve!: () => void
  const promise = new Promise<void>((_resolve) => { resolve = _resolve })
  return { promise, resolve }
}

const open = () => new AbortController().signal

describe('bulkhead', () => {
  it('runs at most `concurrency` tasks at once and queues the next ones', async () => {
    const bulkhead = createBulkhead({ concurrency: 2, maxQueue: 5 })
    const gates = [deferred(), deferred(), deferred()]
    let running = 0
    let peak = 0
    const runs = gates.map((gate) => bulkhead.run(async () => {
      running++
      peak = Math.max(peak, running)
      await gate.promise
      running--
    }, { signal: open(), budgetMs: 1000 }))
    await Promise.resolve()
    expect(bulkhead.active).toBe(2)
    expect(bulkhead.queued).toBe(1)
    gates.forEach((gate) => gate.resolve())
    await Promise.all(runs)
    expect(peak).toBe(2)
    expect(bulkhead.queued).toBe(0)
  })

  it('rejects at once when the queue is full, without running the task', async () => {
    const bulkhead = createBulkhead({ concurrency: 1, maxQueue: 1 })
    const gate = deferred()
    const first = bulkhead.run(() => gate.promise, { signal: open(), budgetMs: 1000 })
    const second = bulkhead.run(() => gate.promise, { signal: open(), budgetMs: 1000 })
    let ran = false
    await expect(bulkhead.run(async () => { ran = true }, { signal: open(), budgetMs: 1000 }))
      .rejects.toMatchObject({ name: 'BulkheadRejectedError', reason: 'queue-full' })
    expect(ran).toBe(false)
    gate.resolve()
    await Promise.all([first, second])
  })

  it('rejects at once when the expected wait is longer than the caller can wait', async () => {
    const bulkhead = createBulkhead({ concurrency: 1, maxQueue: 10 })
    await bulkhead.run(() => new Promise((resolve) => setTimeout(resolve, 50)), { signal: open(), budgetMs: 1000 })
    const gate = deferred()
    const busy = bulkhead.run(() => gate.promise, { signal: open(), budgetMs: 1000 })
    // One call ahead, each takes 50 ms or more (a busy machine only makes it longer): a caller with 10 ms to spare is
    // turned away, one with 10 s waits.
    await expect(bulkhead.run(async () => {}, { signal: open(), budgetMs: 10 })).rejects.toBeInstanceOf(BulkheadRejectedError)
    const patient = bulkhead.run(async () => 'ran', { signal: open(), budgetMs: 10_000 })
    gate.resolve()
    await busy
    await expect(patient).resolves.toBe('ran')
  })

  it('lets a queued call leave when its signal aborts, and frees its queue place', async () => {
    const bulkhead = createBulkhead({ concurrency: 1, maxQueue: 1 })
    const gate = deferred()
    const busy = bulkhead.run(() => gate.promise, { signal: open(), budgetMs: 1000 })
    const controller = new AbortController()
    let ran = false
    const queued = bulkhead.run(async () => { ran = true }, { signal: controller.signal, budgetMs: 1000 })
    expect(bulkhead.queued).toBe(1)
    controller.abort(new Error('deadline'))
    await expect(queued).rejects.toThrow('deadline')
    expect(bulkhead.queued).toBe(0)
    const next = bulkhead.run(async () => 'next', { signal: open(), budgetMs: 1000 })
    gate.resolve()
    await busy
    await expect(next).resolves.toBe('next')
    expect(ran).toBe(false)
  })

  it('refuses a call whose signal has already aborted', async () => {
    const bulkhead = createBulkhead({ concurrency: 1, maxQueue: 1 })
    await expect(bulkhead.run(async () => 'x', { signal: AbortSignal.abort(new Error('gone')), budgetMs: 1000 })).rejects.toThrow('gone')
  })
})
