import { availableParallelism } from 'node:os'
import { Piscina } from 'piscina'
import { describe, expect, it } from 'vitest'
import { sharedCounters } from '../../src/workers/shared-counters.js'
import type { HammerTask } from '../fixtures/counter-hammer.js'

const THREADS = Math.max(4, availableParallelism())
const TIMES = 2_000_000
const hammer = new URL('../fixtures/counter-hammer.ts', import.meta.url).href

/** Has THREADS worker threads increment one shared counter TIMES each, all starting at the same moment. */
async function hammerFromThreads (safe: boolean): Promise<number> {
  const counters = sharedCounters(['hits'])
  const start = new SharedArrayBuffer(4)
  const pool = new Piscina<HammerTask, void>({ filename: hammer, minThreads: THREADS, maxThreads: THREADS, execArgv: ['--import', 'tsx'] })
  try {
    const runs = Array.from({ length: THREADS }, () => pool.run({ buffer: counters.buffer, start, times: TIMES, safe }))
    // Release them together once every thread is waiting at the barrier.
    await new Promise((resolve) => setTimeout(resolve, 500))
    Atomics.store(new Int32Array(start), 0, 1)
    Atomics.notify(new Int32Array(start), 0)
    await Promise.all(runs)
    return counters.read('hits')
  } finally {
    await pool.destroy()
  }
}

describe('counters shared between threads', () => {
  it('add up exactly when every thread increments at once', async () => {
    expect(await hammerFromThreads(true)).toBe(THREADS * TIMES)
  })

  it('lose updates when incremented without Atomics (the lost update the module prevents)', async () => {
    // Interleaving is up to the scheduler; on a multi-core machine a few tries always show it.
    let total = THREADS * TIMES
    for (let attempt = 0; attempt < 5 && total === THREADS * TIMES; attempt++) total = await hammerFromThreads(false)
    expect(total).toBeLessThan(THREADS * TIMES)
  })

  it('attaches to an existing buffer and refuses one of the wrong size', () => {
    const counters = sharedCounters(['a', 'b'] as const)
    counters.add('b', 5)
    expect(sharedCounters(['a', 'b'] as const, counters.buffer).readAll()).toEqual({ a: 0, b: 5 })
    expect(() => sharedCounters(['a'], counters.buffer)).toThrow(RangeError)
  })
})
