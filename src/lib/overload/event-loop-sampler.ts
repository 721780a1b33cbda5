export interface LagWindow {
  /** Worst and 99th-percentile lag since the last call, in ms (0 without samples). */
  take (): { maxMs: number, p99Ms: number, samples: number }
  stop (): void
}

// Samples kept between two takes at most: a minute of 10 ms ticks.
const MAX_SAMPLES = 6000

/**
 * Measures event-loop lag with a timer: a tick that fires N ms late means the loop was busy for N ms. Not
 * monitorEventLoopDelay: its reset() also drops the next sample, which is the one that measures the busy stretch just
 * ended, so a reader that resets every window sees little or no lag exactly when the loop is saturated.
 */
export function sampleEventLoopLag (tickMs = 10): LagWindow {
  let lags: number[] = []
  let lastTick = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    if (lags.length < MAX_SAMPLES) lags.push(Math.max(0, now - lastTick - tickMs))
    lastTick = now
  }, tickMs)
  timer.unref()
  return {
    take () {
      const taken = lags
      lags = []
      if (taken.length === 0) return { maxMs: 0, p99Ms: 0, samples: 0 }
      taken.sort((left, right) => left - right)
      return { maxMs: taken.at(-1)!, p99Ms: taken[Math.min(taken.length - 1, Math.ceil(taken.length * 0.99) - 1)]!, samples: taken.length }
    },
    stop () { clearInterval(timer) }
  }
}
