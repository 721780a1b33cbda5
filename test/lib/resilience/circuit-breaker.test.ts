import { describe, expect, it } from 'vitest'
import { createCircuitBreaker, type CircuitBreakerOptions, type CircuitPermit, type CircuitTransition } from '../../../src/lib/resilience/circuit-breaker.js'

const OPTIONS: CircuitBreakerOptions = {
  failureRate: 0.5, slowCallRate: 0.8, slowCallMs: 100, windowSize: 10, windowMs: 10_000, minimumCalls: 4, openMs: 1000, halfOpenProbes: 1
}

/** A breaker on a clock the test moves, and the transitions it announced. */
function breakerAt (options: Partial<CircuitBreakerOptions> = {}) {
  const clock = { now: 0 }
  const transitions: CircuitTransition[] = []
  const breaker = createCircuitBreaker({ ...OPTIONS, ...options, now: () => clock.now }, (transition) => transitions.push(transition))
  /** One call that takes `ms` and ends with `verdict`. */
  const call = (verdict: 'success' | 'failure' | 'ignored', ms = 10, judgeSlowness = true) => {
    const permit = breaker.acquire()
    if ('retryAfterMs' in permit) return permit
    clock.now += ms
    breaker.release(permit, verdict, judgeSlowness)
    return permit
  }
  return { breaker, clock, transitions, call }
}

describe('the circuit breaker', () => {
  it('stays closed below the minimum number of calls, however many fail', () => {
    const { breaker, call } = breakerAt()
    for (let index = 0; index < 3; index++) call('failure')
    expect(breaker.state()).toBe('closed')
  })

  it('opens once the failure rate over the window reaches the threshold, and refuses at once while open', () => {
    const { breaker, call, transitions, clock } = breakerAt()
    call('success')
    call('success')
    call('failure')
    expect(breaker.state()).toBe('closed')
    call('failure')
    expect(breaker.state()).toBe('open')
    expect(transitions).toEqual([{ from: 'closed', to: 'open', reason: 'failure rate 50% over the last 4 calls' }])
    const refused = breaker.acquire()
    expect(refused).toEqual({ retryAfterMs: 1000 })
    clock.now += 400
    expect(breaker.acquire()).toEqual({ retryAfterMs: 600 })
    expect(breaker.stats()).toMatchObject({ state: 'open', openForMs: 600, notPermitted: 2 })
  })

  it('opens on the slow-call rate even when every call succeeds', () => {
    const { breaker, call, transitions } = breakerAt()
    for (let index = 0; index < 3; index++) call('success', 150)
    call('success', 10)
    expect(breaker.state()).toBe('closed')
    call('success', 150)
    expect(breaker.state()).toBe('open')
    expect(transitions[0]!.reason).toBe('slow-call rate 80% over the last 5 calls (slow: ≥ 100 ms)')
  })

  it('never opens on the duration of calls whose slowness is not judged (a batch\'s), but on their failures', () => {
    const { breaker, call } = breakerAt()
    for (let index = 0; index < 10; index++) call('success', 500, false)
    expect(breaker.stats()).toMatchObject({ state: 'closed', bufferedCalls: 10, slowCallRate: 0 })
    for (let index = 0; index < 10; index++) call('failure', 500, false)
    expect(breaker.state()).toBe('open')
  })

  it('does not count ignored calls (cancelled, refused by us) either way', () => {
    const { breaker, call } = breakerAt()
    for (let index = 0; index < 10; index++) call('ignored', 500)
    expect(breaker.stats()).toMatchObject({ state: 'closed', bufferedCalls: 0 })
  })

  it('forgets calls older than the window, so an idle upstream is not judged on them', () => {
    const { breaker, call, clock } = breakerAt({ windowMs: 1000 })
    for (let index = 0; index < 3; index++) call('failure')
    clock.now += 2000
    call('failure')
    expect(breaker.stats()).toMatchObject({ state: 'closed', bufferedCalls: 1 })
  })

  it('keeps only the latest calls of a full window', () => {
    const { breaker, call } = breakerAt({ windowSize: 4 })
    call('failure')
    for (let index = 0; index < 4; index++) call('success')
    expect(breaker.stats()).toMatchObject({ bufferedCalls: 4, failureRate: 0 })
  })

  it('after the wait lets one probe through and refuses the rest; a successful probe closes it', () => {
    const { breaker, call, clock, transitions } = breakerAt()
    for (let index = 0; index < 4; index++) call('failure')
    clock.now += 1000
    expect(breaker.state()).toBe('half-open')
    const probe = breaker.acquire() as CircuitPermit
    expect(probe.probe).toBe(true)
    expect(breaker.acquire()).toEqual({ retryAfterMs: 100 })
    clock.now += 20
    breaker.release(probe, 'success')
    expect(breaker.state()).toBe('closed')
    expect(transitions.map(({ to }) => to)).toEqual(['open', 'half-open', 'closed'])
  })

  it('reopens for another wait when the probe fails or is slow', () => {
    const { breaker, call, clock } = breakerAt()
    for (let index = 0; index < 4; index++) call('failure')
    clock.now += 1000
    call('failure')
    expect(breaker.stats()).toMatchObject({ state: 'open', openForMs: 1000 })
    clock.now += 1000
    call('success', 150)
    expect(breaker.state()).toBe('open')
  })

  it('needs as many successful probes as it lets through to close', () => {
    const { breaker, call, clock } = breakerAt({ halfOpenProbes: 2 })
    for (let index = 0; index < 4; index++) call('failure')
    clock.now += 1000
    const first = breaker.acquire() as CircuitPermit
    const second = breaker.acquire() as CircuitPermit
    expect('retryAfterMs' in breaker.acquire()).toBe(true)
    breaker.release(first, 'success')
    expect(breaker.state()).toBe('half-open')
    breaker.release(second, 'success')
    expect(breaker.state()).toBe('closed')
  })

  it('a cancelled probe frees its place for another', () => {
    const { breaker, call, clock } = breakerAt()
    for (let index = 0; index < 4; index++) call('failure')
    clock.now += 1000
    call('ignored')
    const next = breaker.acquire()
    expect('probe' in next && next.probe).toBe(true)
  })
})
