import { performance } from 'node:perf_hooks'

// Clocks for vitest bench's `now` option: the unit benchmarks time what a step costs, not how long the machine took.

/**
 * CPU milliseconds (user + system) this process has used. CPU rather than wall time: on a shared, busy machine wall
 * time mostly measures the other tenants.
 */
export function cpuClock (): number {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1000
}

/**
 * Milliseconds the event loop has been active: what a step costs the main thread, excluding the time it waits (for a
 * worker thread, a socket) and any other thread's CPU.
 */
export function eventLoopClock (): number {
  return performance.eventLoopUtilization().active
}
