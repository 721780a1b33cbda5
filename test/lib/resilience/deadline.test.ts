import { setMaxListeners } from 'node:events'
import { describe, expect, it } from 'vitest'
import { startDeadline } from '../../../src/lib/resilience/deadline.js'

const gc = (globalThis as { gc?: () => void }).gc
const aborted = (signal: AbortSignal) => new Promise<unknown>((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }))

/** Waits for `signals` to abort, forcing garbage collections meanwhile; counts the ones that did by `deadlineMs`. */
async function countAborted (create: () => AbortSignal, count: number, deadlineMs: number): Promise<number> {
  let abortedCount = 0
  const waits: Array<Promise<void>> = []
  for (let index = 0; index < count; index++) {
    const signal = create()
    waits.push(new Promise((resolve) => {
      const timer = setTimeout(resolve, deadlineMs)
      signal.addEventListener('abort', () => { abortedCount++; clearTimeout(timer); resolve() }, { once: true })
    }))
  }
  const churn = setInterval(() => gc?.(), 10)
  await Promise.all(waits)
  clearInterval(churn)
  return abortedCount
}

describe('startDeadline', () => {
  it('aborts its signal and every call with a TimeoutError once the budget has passed', async () => {
    const deadline = startDeadline(20, new AbortController().signal)
    const call = deadline.callSignal(10_000)
    const reason = await aborted(deadline.signal)
    expect((reason as Error).name).toBe('TimeoutError')
    expect(call.aborted, 'a call outliving the deadline is aborted with it').toBe(true)
  })

  it('aborts a call at its own budget while the deadline and the other calls go on', async () => {
    const deadline = startDeadline(10_000, new AbortController().signal)
    const short = deadline.callSignal(20)
    const long = deadline.callSignal(5_000)
    const reason = await aborted(short)
    expect((reason as Error).name).toBe('TimeoutError')
    expect(long.aborted).toBe(false)
    expect(deadline.signal.aborted).toBe(false)
    deadline.release()
  })

  it('aborts with the parent\'s reason when the client goes away, and at once when the parent already has', () => {
    const parent = new AbortController()
    const deadline = startDeadline(10_000, parent.signal)
    const call = deadline.callSignal(5_000)
    parent.abort(new Error('client went away'))
    expect((deadline.signal.reason as Error).message).toBe('client went away')
    expect((call.reason as Error).message).toBe('client went away')
    const late = startDeadline(10_000, AbortSignal.abort(new Error('gone')))
    expect((late.callSignal(100).reason as Error).message).toBe('gone')
  })

  it('aborts every call when told to give up', () => {
    const deadline = startDeadline(10_000, new AbortController().signal)
    const calls = [deadline.callSignal(100), deadline.callSignal(200)]
    deadline.abort(new Error('required upstream failed'))
    expect(calls.map((call) => (call.reason as Error | undefined)?.message)).toEqual(['required upstream failed', 'required upstream failed'])
  })

  it('never fires after release', async () => {
    const parent = new AbortController()
    const deadline = startDeadline(20, parent.signal)
    const call = deadline.callSignal(10)
    deadline.release()
    parent.abort()
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect([deadline.signal.aborted, call.aborted]).toEqual([false, false])
  })

  it('still times out its calls when garbage is collected while they wait', async () => {
    expect(gc, 'tests run with --expose-gc (vitest.config.ts)').toBeTypeOf('function')
    const request = new AbortController()
    // 200 deadlines under one request: 200 listeners on its signal are the point, not a leak.
    setMaxListeners(0, request.signal)
    // 50 ms calls in a 5 s deadline, given a second: twenty times the budget, and still long before the deadline fires.
    const count = await countAborted(() => startDeadline(5000, request.signal).callSignal(50), 200, 1000)
    expect(count, 'calls aborted within a second').toBe(200)
  })

  // Why the deadline keeps its own timer: the same chain built from AbortSignal.any and AbortSignal.timeout loses its
  // timeouts on Node 20 (the timeout signals are held only weakly).
  it.runIf(process.versions.node.startsWith('20.'))('on Node 20, the built-in AbortSignal.any + AbortSignal.timeout chain does not', async () => {
    const request = new AbortController()
    setMaxListeners(0, request.signal)
    const count = await countAborted(() => {
      const deadline = AbortSignal.any([request.signal, AbortSignal.timeout(300)])
      const fanOut = AbortSignal.any([deadline, new AbortController().signal])
      return AbortSignal.any([fanOut, AbortSignal.timeout(50)])
    }, 200, 250)
    expect(count).toBeLessThan(200)
  })
})
