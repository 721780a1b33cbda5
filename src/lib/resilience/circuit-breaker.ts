/**
 * A circuit breaker with resilience4j's semantics: it opens when the failure rate *or* the slow-call rate over the
 * last calls reaches its threshold (once there are enough calls to judge), refuses every call while open, and after a
 * wait lets a bounded number of probes through (half-open): they close it if they all succeed, and any failure opens it
 * again. Hand-written because neither cockatiel 4 nor opossum 10 has a slow-call rate, and both make calls beyond the
 * probes wait (or let them through) where a gateway wants an immediate refusal and a fallback inside its deadline.
 *
 * It keeps no timer: the window is trimmed and the open wait checked when a call arrives or the state is read.
 */

export type CircuitState = 'closed' | 'open' | 'half-open'
export const CIRCUIT_STATES: readonly CircuitState[] = ['closed', 'open', 'half-open']

export interface CircuitBreakerOptions {
  /** Share of failed calls in the window (0..1) at which it opens. */
  failureRate: number
  /** Share of slow calls in the window (0..1) at which it opens. */
  slowCallRate: number
  /** A call that takes at least this long is slow, whatever its outcome. */
  slowCallMs: number
  /** The window holds at most this many of the latest calls … */
  windowSize: number
  /** … none older than this, so an idle upstream is not judged on calls from long ago. */
  windowMs: number
  /** Fewer calls than this in the window never open it. */
  minimumCalls: number
  /** How long it stays open before probing. */
  openMs: number
  /** Probes allowed in flight while half-open; this many successes close it. */
  halfOpenProbes: number
  now?: () => number
}

/** What a finished call tells the breaker. `ignored`: says nothing about the upstream (cancelled, refused by us). */
export type CallVerdict = 'success' | 'failure' | 'ignored'

export interface CircuitTransition {
  from: CircuitState
  to: CircuitState
  /** Why, for the log: the rates that opened it, or the probe that closed or reopened it. */
  reason: string
}

/** Permission to make one call; hand it back with the call's verdict. */
export interface CircuitPermit {
  readonly probe: boolean
  readonly startedAt: number
}

export interface CircuitBreakerStats {
  state: CircuitState
  /** Milliseconds until a probe is allowed (0 unless open). */
  openForMs: number
  failureRate: number
  slowCallRate: number
  bufferedCalls: number
  notPermitted: number
  /** Transitions into each state since start. */
  transitions: Record<CircuitState, number>
}

export function createCircuitBreaker (options: CircuitBreakerOptions, onTransition: (transition: CircuitTransition) => void = () => {}) {
  const { failureRate, slowCallRate, slowCallMs, windowSize, windowMs, minimumCalls, openMs, halfOpenProbes } = options
  const now = options.now ?? (() => performance.now())
  // The window: a ring of the latest calls' end times and outcomes, with running counts.
  const endedAt = new Float64Array(windowSize)
  const failed = new Uint8Array(windowSize)
  const slow = new Uint8Array(windowSize)
  let head = 0
  let size = 0
  let failures = 0
  let slowCalls = 0

  let state: CircuitState = 'closed'
  let openUntil = 0
  let probesInFlight = 0
  let probeSuccesses = 0
  let notPermitted = 0
  const transitions: Record<CircuitState, number> = { closed: 0, open: 0, 'half-open': 0 }

  function transition (to: CircuitState, reason: string) {
    const from = state
    state = to
    transitions[to]++
    onTransition({ from, to, reason })
  }

  function clearWindow () {
    head = 0
    size = 0
    failures = 0
    slowCalls = 0
  }

  function dropOldest () {
    failures -= failed[head]!
    slowCalls -= slow[head]!
    head = (head + 1) % windowSize
    size--
  }

  function trim (at: number) {
    while (size > 0 && endedAt[head]! < at - windowMs) dropOldest()
  }

  /** Open → half-open once the wait is over: computed when asked, not by a timer. */
  function current (at: number): CircuitState {
    if (state === 'open' && at >= openUntil) {
      probesInFlight = 0
      probeSuccesses = 0
      transition('half-open', `waited ${openMs} ms`)
    }
    return state
  }

  function open (at: number, reason: string) {
    openUntil = at + openMs
    clearWindow()
    transition('open', reason)
  }

  const percent = (share: number) => `${Math.round(share * 100)}%`

  return {
    /** A permit for one call, or the milliseconds until one could be had (the call must not be made). */
    acquire (): CircuitPermit | { retryAfterMs: number } {
      const at = now()
      const stateNow = current(at)
      if (stateNow === 'closed') return { probe: false, startedAt: at }
      if (stateNow === 'half-open' && probesInFlight < halfOpenProbes) {
        probesInFlight++
        return { probe: true, startedAt: at }
      }
      notPermitted++
      // Half-open with every probe out: a refusal for about as long as a probe may take, at least a millisecond.
      return { retryAfterMs: Math.max(1, stateNow === 'open' ? openUntil - at : slowCallMs) }
    },

    /** Records how a permitted call ended; `judgeSlowness` false: its duration says nothing about the upstream. */
    release (permit: CircuitPermit, verdict: CallVerdict, judgeSlowness = true) {
      const at = now()
      const isSlow = judgeSlowness && at - permit.startedAt >= slowCallMs
      if (permit.probe) {
        // A probe from a half-open period that has since ended (it reopened) tells nothing more.
        if (state !== 'half-open') return
        probesInFlight--
        if (verdict === 'ignored') return
        if (verdict === 'failure' || isSlow) {
          open(at, `probe ${verdict === 'failure' ? 'failed' : `took ${Math.round(at - permit.startedAt)} ms`}`)
        } else if (++probeSuccesses >= halfOpenProbes) {
          clearWindow()
          transition('closed', `${probeSuccesses} probe(s) succeeded`)
        }
        return
      }
      if (verdict === 'ignored' || state !== 'closed') return
      trim(at)
      if (size === windowSize) dropOldest()
      const index = (head + size) % windowSize
      endedAt[index] = at
      failed[index] = verdict === 'failure' ? 1 : 0
      slow[index] = isSlow ? 1 : 0
      failures += failed[index]!
      slowCalls += slow[index]!
      size++
      if (size < minimumCalls) return
      if (failures / size >= failureRate) open(at, `failure rate ${percent(failures / size)} over the last ${size} calls`)
      else if (slowCalls / size >= slowCallRate) open(at, `slow-call rate ${percent(slowCalls / size)} over the last ${size} calls (slow: ≥ ${slowCallMs} ms)`)
    },

    state: (): CircuitState => current(now()),

    stats (): CircuitBreakerStats {
      const at = now()
      const stateNow = current(at)
      if (stateNow === 'closed') trim(at)
      return {
        state: stateNow,
        openForMs: stateNow === 'open' ? Math.max(0, Math.round(openUntil - at)) : 0,
        failureRate: size === 0 ? 0 : failures / size,
        slowCallRate: size === 0 ? 0 : slowCalls / size,
        bufferedCalls: size,
        notPermitted,
        transitions: { ...transitions }
      }
    }
  }
}

export type CircuitBreaker = ReturnType<typeof createCircuitBreaker>
