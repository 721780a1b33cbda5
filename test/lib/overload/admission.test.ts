import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createAdmission, type AdmissionOptions, type ShedReason } from '../../../src/lib/overload/admission.js'

const OPTIONS: AdmissionOptions = {
  initialLimit: 4, minLimit: 2, maxLimit: 64, maxQueue: 3, queueTargetMs: 5, queueIntervalMs: 100, latencyTolerance: 2, now: () => Date.now()
}

/** A request as the caller sees it: started, rejected (and why), or still waiting. */
function arrive (admission: ReturnType<typeof createAdmission>) {
  const request = { started: false, rejected: null as ShedReason | null, turnedAway: null as ShedReason | null, cancel: () => {} }
  const ticket = admission.enter(() => { request.started = true }, (reason) => { request.rejected = reason })
  if (ticket !== null && 'reason' in ticket) request.turnedAway = ticket.reason
  if (ticket !== null && 'cancel' in ticket) request.cancel = ticket.cancel
  return request
}

beforeEach(() => { vi.useFakeTimers() })
afterEach(() => { vi.useRealTimers() })

describe('admission', () => {
  it('admits up to its limit at once, queues the next ones and turns away what the queue cannot hold', () => {
    const admission = createAdmission(OPTIONS)
    const requests = Array.from({ length: 8 }, () => arrive(admission))
    expect(requests.map((request) => request.started)).toEqual([true, true, true, true, false, false, false, false])
    expect(requests.map((request) => request.turnedAway)).toEqual([null, null, null, null, null, null, null, 'queue-full'])
    expect(admission.stats()).toMatchObject({ limit: 4, inFlight: 4, queued: 3 })
    admission.leave()
    expect(requests[4]!.started, 'the oldest waiter takes the freed slot').toBe(true)
    admission.stop()
  })

  it('turns a request away once it has waited the CoDel interval', () => {
    const admission = createAdmission(OPTIONS)
    for (let index = 0; index < 4; index++) arrive(admission)
    const waiting = arrive(admission)
    vi.advanceTimersByTime(99)
    expect(waiting.rejected).toBe(null)
    vi.advanceTimersByTime(10)
    expect(waiting.rejected).toBe('queue-timeout')
    expect(admission.stats().queued).toBe(0)
    admission.stop()
  })

  it('once the queue has stood for the interval, cuts new waits to the target and serves the newest first', () => {
    const admission = createAdmission({ ...OPTIONS, maxQueue: 10, queueIntervalMs: 50 })
    for (let index = 0; index < 4; index++) arrive(admission)
    arrive(admission)
    vi.advanceTimersByTime(40)
    arrive(admission)
    vi.advanceTimersByTime(20)
    // The queue has now been non-empty for 60 ms > 50 ms: it is standing.
    const late = arrive(admission)
    const newest = arrive(admission)
    vi.advanceTimersByTime(2)
    admission.leave()
    expect(newest.started, 'adaptive LIFO: the newest waiter goes first').toBe(true)
    expect(late.started).toBe(false)
    vi.advanceTimersByTime(10)
    expect(late.rejected, 'a standing queue lets a request wait only the 5 ms target').toBe('queue-timeout')
    admission.stop()
  })

  it('forgets a waiter whose client went away', () => {
    const admission = createAdmission(OPTIONS)
    for (let index = 0; index < 4; index++) arrive(admission)
    const gone = arrive(admission)
    const next = arrive(admission)
    gone.cancel()
    admission.leave()
    expect([gone.started, next.started]).toEqual([false, true])
    admission.stop()
  })

  it('never lowers its limit while fewer than half of it are in flight, however slow the samples (another process on the CPU)', () => {
    const admission = createAdmission({ ...OPTIONS, initialLimit: 32 })
    for (let round = 0; round < 50; round++) {
      arrive(admission)
      admission.recordOwnTime(round < 10 ? 3 : 60)
      vi.advanceTimersByTime(100)
      admission.leave()
    }
    expect(admission.stats().limit).toBe(32)
    admission.stop()
  })

  it('lowers its limit when own time grows while it is busy, and raises it again when own time recovers', () => {
    const admission = createAdmission({ ...OPTIONS, initialLimit: 16, maxQueue: 0 })
    // Every slot taken, as under real overload: the limit is what is in the way.
    const saturate = () => { while (admission.stats().inFlight < admission.stats().limit) arrive(admission) }
    const round = (ownMs: number) => { saturate(); admission.recordOwnTime(ownMs); vi.advanceTimersByTime(100) }
    for (let index = 0; index < 20; index++) round(3)
    const healthy = admission.stats().limit
    for (let index = 0; index < 10; index++) round(40)
    const overloaded = admission.stats().limit
    expect(overloaded, `limit ${healthy} → ${overloaded} after own time went from 3 to 40 ms`).toBeLessThan(healthy * 0.7)
    expect(overloaded).toBeGreaterThanOrEqual(OPTIONS.minLimit)
    for (let index = 0; index < 40; index++) round(3)
    expect(admission.stats().limit).toBeGreaterThan(overloaded)
    admission.stop()
  })
})
