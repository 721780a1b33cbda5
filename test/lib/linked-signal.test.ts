import { describe, expect, it } from 'vitest'
import { linkedSignal } from '../../src/lib/linked-signal.js'

const gc = (globalThis as { gc?: () => void }).gc

/** Waits for `signals` to abort, forcing garbage collections meanwhile; counts the ones that did by `deadlineMs`. */
async function countAborted (create: () => AbortSignal, count: number, deadlineMs: number): Promise<number> {
  let aborted = 0
  const waits: Array<Promise<void>> = []
  for (let index = 0; index < count; index++) {
    const signal = create()
    waits.push(new Promise((resolve) => {
      const timer = setTimeout(resolve, deadlineMs)
      signal.addEventListener('abort', () => { aborted++; clearTimeout(timer); resolve() }, { once: true })
    }))
  }
  const churn = setInterval(() => gc?.(), 10)
  await Promise.all(waits)
  clearInterval(churn)
  return aborted
}

describe('linkedSignal', () => {
  it('aborts with a TimeoutError once the time has passed', async () => {
    const { signal } = linkedSignal([], 20)
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
    expect((signal.reason as Error).name).toBe('TimeoutError')
  })

  it('aborts with the reason of whichever parent aborts first', () => {
    const first = new AbortController()
    const second = new AbortController()
    const { signal } = linkedSignal([first.signal, second.signal], 10_000)
    second.abort(new Error('client went away'))
    expect(signal.aborted).toBe(true)
    expect((signal.reason as Error).message).toBe('client went away')
    first.abort(new Error('later'))
    expect((signal.reason as Error).message).toBe('client went away')
  })

  it('is aborted at once when a parent already is', () => {
    const { signal } = linkedSignal([AbortSignal.abort(new Error('gone'))], 10_000)
    expect((signal.reason as Error).message).toBe('gone')
  })

  it('never fires after release', async () => {
    const parent = new AbortController()
    const { signal, release } = linkedSignal([parent.signal], 20)
    release()
    parent.abort()
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(signal.aborted).toBe(false)
  })

  it('still times out when garbage is collected while it waits', async () => {
    expect(gc, 'tests run with --expose-gc (vitest.config.ts)').toBeTypeOf('function')
    const request = new AbortController()
    const aborted = await countAborted(() => {
      const deadline = linkedSignal([request.signal], 300)
      const giveUp = new AbortController()
      const fanOut = linkedSignal([deadline.signal, giveUp.signal])
      return linkedSignal([fanOut.signal], 50).signal
    }, 200, 250)
    expect(aborted).toBe(200)
  })

  // Why linkedSignal exists: the same chain built from AbortSignal.any and AbortSignal.timeout loses its timeouts.
  it.runIf(process.versions.node.startsWith('20.'))('on Node 20, the built-in AbortSignal.any + AbortSignal.timeout chain does not', async () => {
    const request = new AbortController()
    const aborted = await countAborted(() => {
      const deadline = AbortSignal.any([request.signal, AbortSignal.timeout(300)])
      const fanOut = AbortSignal.any([deadline, new AbortController().signal])
      return AbortSignal.any([fanOut, AbortSignal.timeout(50)])
    }, 200, 250)
    expect(aborted).toBeLessThan(200)
  })
})
