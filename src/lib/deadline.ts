/**
 * The time budget of one request. Its signal aborts when the budget runs out or when the parent signal
 * (client disconnect, handler timeout) aborts, so everything that waits on it can be cancelled from one place.
 */
import { linkedSignal } from './linked-signal.js'

export interface Deadline {
  readonly signal: AbortSignal
  /** Stops the deadline's timer once the request is answered. */
  release (): void
  /** Milliseconds left, never negative. */
  remainingMs (): number
}

/**
 * Starts a deadline of `budgetMs` chained to `parent`.
 */
export function startDeadline (budgetMs: number, parent: AbortSignal): Deadline {
  const expiresAt = performance.now() + budgetMs
  const { signal, release } = linkedSignal([parent], budgetMs)
  return {
    signal,
    release,
    remainingMs: () => Math.max(0, expiresAt - performance.now())
  }
}

/**
 * How long one upstream call may take: its own timeout, or what is left of the deadline once the merge's
 * share is set aside, whichever is shorter.
 */
export function callBudgetMs (deadline: Deadline, ownTimeoutMs: number, mergeReserveMs: number): number {
  return Math.floor(Math.min(ownTimeoutMs, deadline.remainingMs() - mergeReserveMs))
}
