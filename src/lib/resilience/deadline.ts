/**
 * The time budget of one request, with one timer for the request and every upstream call in it. Its signal aborts
 * when the budget runs out or the parent signal (client disconnect, handler timeout) aborts; each call gets its own
 * signal that also aborts when the call's budget runs out. A linked signal per call (a timer and a listener each)
 * cost about 5% of the main thread's CPU; here the calls share the request's single timer, which is always set for
 * the earliest expiry still pending.
 */

export interface Deadline {
  readonly signal: AbortSignal
  /** Milliseconds left, never negative. */
  remainingMs (): number
  /** A signal for one call: aborts with the deadline, or with a `TimeoutError` once `budgetMs` has passed. */
  callSignal (budgetMs: number): AbortSignal
  /** Aborts the deadline (and every call) with `reason`, e.g. when the calls are of no use any more. */
  abort (reason: unknown): void
  /** Stops the timer and detaches from the parent; call it once the request is answered. */
  release (): void
}

interface PendingCall {
  expiresAt: number
  budgetMs: number
  controller: AbortController
}

const timeoutError = (ms: number) => new DOMException(`timed out after ${ms} ms`, 'TimeoutError')

/**
 * Starts a deadline of `budgetMs` chained to `parent`. A plain timer, not `AbortSignal.timeout`: on Node 20 a timeout
 * signal is held only weakly and could be garbage-collected before it fired (see test/lib/resilience/deadline.test.ts).
 */
export function startDeadline (budgetMs: number, parent: AbortSignal): Deadline {
  const startedAt = performance.now()
  const expiresAt = startedAt + budgetMs
  const controller = new AbortController()
  let calls: PendingCall[] = []
  let timer: NodeJS.Timeout | undefined
  let timerAt = Number.POSITIVE_INFINITY

  function schedule () {
    let next = controller.signal.aborted ? Number.POSITIVE_INFINITY : expiresAt
    for (const call of calls) if (call.expiresAt < next) next = call.expiresAt
    if (next === timerAt) return
    clearTimeout(timer)
    timerAt = next
    if (next === Number.POSITIVE_INFINITY) return
    timer = setTimeout(onTimer, Math.max(0, next - performance.now()))
    timer.unref()
  }

  function onTimer () {
    timerAt = Number.POSITIVE_INFINITY
    const now = performance.now()
    if (now >= expiresAt - 0.5) {
      abort(timeoutError(budgetMs))
      return
    }
    const remaining: PendingCall[] = []
    for (const call of calls) {
      if (call.expiresAt <= now + 0.5) call.controller.abort(timeoutError(call.budgetMs))
      else if (!call.controller.signal.aborted) remaining.push(call)
    }
    calls = remaining
    schedule()
  }

  function abort (reason: unknown) {
    if (controller.signal.aborted) return
    controller.abort(reason)
    for (const call of calls) call.controller.abort(reason)
    calls = []
    release()
  }

  const onParentAbort = () => { abort(parent.reason) }
  function release () {
    clearTimeout(timer)
    timerAt = Number.POSITIVE_INFINITY
    parent.removeEventListener('abort', onParentAbort)
  }

  if (parent.aborted) abort(parent.reason)
  else {
    parent.addEventListener('abort', onParentAbort, { once: true })
    schedule()
  }

  return {
    signal: controller.signal,
    remainingMs: () => Math.max(0, expiresAt - performance.now()),
    callSignal (callBudgetMs) {
      const call = { expiresAt: performance.now() + callBudgetMs, budgetMs: callBudgetMs, controller: new AbortController() }
      if (controller.signal.aborted) {
        call.controller.abort(controller.signal.reason)
      } else {
        calls.push(call)
        if (call.expiresAt < timerAt) schedule()
      }
      return call.controller.signal
    },
    abort,
    release
  }
}

/**
 * How long one upstream call may take: its own timeout, or what is left of the deadline once the merge's
 * share is set aside, whichever is shorter.
 */
export function callBudgetMs (deadline: Deadline, ownTimeoutMs: number, mergeReserveMs: number): number {
  return Math.floor(Math.min(ownTimeoutMs, deadline.remainingMs() - mergeReserveMs))
}
