export interface ShedControllerOptions {
  /** Event-loop delay (the worst within one interval) the controller steers towards, in ms. */
  targetDelayMs: number
  /** How often the delay is sampled and the shed probability adjusted, in ms. */
  intervalMs: number
  /** Added to the shed probability per interval over the target: reacts within a few intervals. */
  increaseStep?: number
  /** Taken from it per interval under half the target: recovers gradually, without oscillating. */
  decreaseStep?: number
}

export interface ShedController {
  /** True for the share of requests to turn away now. */
  shouldShed (): boolean
  /** The current shed probability, 0..1. */
  readonly probability: number
  /** The worst event-loop delay of the last interval, in ms. */
  readonly delayMs: number
  stop (): void
}

/**
 * Graduated load shedding on event-loop delay. An on/off switch sampled every half second (under-pressure's model)
 * swings between rejecting everything and letting a flood into a saturated loop, where admitted requests then run out
 * of time: measured at 4x capacity, goodput fell to a quarter of capacity. This controller sheds a *share* of requests
 * instead, steering the loop's delay to a target: the share rises quickly while the delay is over it and falls slowly
 * once it is well under. Loop delay measures this process's own saturation, so a slow upstream (which only makes
 * requests wait on I/O) never causes shedding.
 */
// How often the loop's lag is sampled: a tick that fires late by N ms means the loop was busy for N ms.
const TICK_MS = 10

export function createShedController ({ targetDelayMs, intervalMs, increaseStep = 0.1, decreaseStep = 0.02 }: ShedControllerOptions): ShedController {
  // Not monitorEventLoopDelay: its reset() also drops the next sample, which is the one that measures the busy stretch
  // just ended, so a sampler that resets every interval sees no lag at all while the loop is saturated.
  let probability = 0
  let delayMs = 0
  let worstLag = 0
  let lastTick = performance.now()
  let windowStart = lastTick
  const timer = setInterval(() => {
    const now = performance.now()
    worstLag = Math.max(worstLag, now - lastTick - TICK_MS)
    lastTick = now
    if (now - windowStart < intervalMs) return
    delayMs = Math.max(0, worstLag)
    worstLag = 0
    windowStart = now
    if (delayMs > targetDelayMs) probability = Math.min(0.99, probability + increaseStep)
    else if (delayMs < targetDelayMs / 2) probability = Math.max(0, probability - decreaseStep)
  }, TICK_MS)
  timer.unref()
  return {
    shouldShed: () => probability > 0 && Math.random() < probability,
    get probability () { return probability },
    get delayMs () { return delayMs },
    stop () { clearInterval(timer) }
  }
}
