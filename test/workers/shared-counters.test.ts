import { availableParallelism } from 'node:os'
import { Piscina } from 'piscina'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sharedCounters } from '../../src/workers/shared-counters.js'
import type { HammerTask } from '../fixtures/counter-hammer.js'
import { compiled } from '../helpers/compiled.js'
import { eventually } from '../helpers/mock-upstreams.js'

const THREADS = Math.max(4, availableParallelism())
const TIMES = 2_000_000
// The threads run this run's compiled copy of the fixture (and of src/workers/shared-counters.ts, which it imports).
const hammer = compiled(new URL('../fixtures/counter-hammer.ts', import.meta.url)).href

let pool: Piscina<HammerTask, void>
beforeAll(() => { pool = new Piscina<HammerTask, void>({ filename: hammer, minThreads: THREADS, maxThreads: THREADS }) })
afterAll(async () => { await pool?.destroy() })

/** Has THREADS worker threads increment one shared counter TIMES each, all starting at the same moment. */
async function hammerFromThreads (safe: boolean): Promise<number> {
  const counters = sharedCounters(['hits'])
  const start = new SharedArrayBuffer(8)
  const barrier = new Int32Array(start)
  const runs = Array.from({ length: THREADS }, () => pool.run({ buffer: counters.buffer, start, times: TIMES, safe }))
  // Release them together once every thread is waiting at the barrier (each task blocks its thread, so each has its own).
  await eventually(async () => Atomics.load(barrier, 1) === THREADS, 20_000, `${THREADS} threads at the barrier`)
  Atomics.store(barrier, 0, 1)
  Atomics.notify(barrier, 0)
  await Promise.all(runs)
  return counters.read('hits')
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
