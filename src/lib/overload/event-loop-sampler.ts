import { performance } from 'node:perf_hooks'
import { percentile } from '../percentile.js'

export interface EventLoopWindow {
  /** Mean, 99th-percentile and worst lag over the window, in ms (0 without samples). */
  meanMs: number
  p99Ms: number
  maxMs: number
  samples: number
}

export interface EventLoopSampler {
  /** Lag over the last `windowMs` milliseconds. */
  lag (windowMs: number): EventLoopWindow
  /** Event-loop utilisation (0..1) over the last whole second. */
  utilization (): number
  stop (): void
}

/**
 * The process's one event-loop sampler: the backstop, telemetry and the dashboard read it, so they agree. A timer
 * measures lag (a tick that fires N ms late means the loop was busy for N ms) into a ring of the last few seconds;
 * readers look at any window without resetting anyone else's. Not monitorEventLoopDelay: its reset() also drops the
 * next sample, which is the one that measures the busy stretch just ended.
 */
export function startEventLoopSampler ({ tickMs = 10, keepMs = 10_000 } = {}): EventLoopSampler {
  const size = Math.ceil(keepMs / tickMs)
  const lags = new Float64Array(size)
  const at = new Float64Array(size)
  let next = 0
  let count = 0
  let lastTick = performance.now()
  let lastSecond = performance.eventLoopUtilization()
  let utilization = 0
  let sinceSecond = 0

  const timer = setInterval(() => {
    const now = performance.now()
    lags[next] = Math.max(0, now - lastTick - tickMs)
    at[next] = now
    next = (next + 1) % size
    count = Math.min(size, count + 1)
    lastTick = now
    if ((sinceSecond += tickMs) >= 1000) {
      sinceSecond = 0
      utilization = performance.eventLoopUtilization(lastSecond).utilization
      lastSecond = performance.eventLoopUtilization()
    }
  }, tickMs)
  timer.unref()

  return {
    lag (windowMs) {
      const since = performance.now() - windowMs
      const window: number[] = []
      for (let index = 0; index < count; index++) {
        const slot = (next - 1 - index + size) % size
        if (at[slot]! < since) break
        window.push(lags[slot]!)
      }
      if (window.length === 0) return { meanMs: 0, p99Ms: 0, maxMs: 0, samples: 0 }
      window.sort((left, right) => left - right)
      return { meanMs: window.reduce((sum, lag) => sum + lag, 0) / window.length, p99Ms: percentile(window, 0.99), maxMs: window.at(-1)!, samples: window.length }
    },
    utilization: () => utilization,
    stop () { clearInterval(timer) }
  }
}
