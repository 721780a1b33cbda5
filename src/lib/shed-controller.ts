import { performance } from 'node:perf_hooks'
import { sampleEventLoopLag } from './event-loop-lag.js'

export interface ShedControllerOptions {
  /** Event-loop delay (the worst within one interval) the controller steers towards, in ms; 0: not used. */
  targetDelayMs: number
  /** Event-loop utilisation (over one interval, 0..1) the controller steers towards; 0: not used. */
  targetUtilization: number
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
  /** The event-loop utilisation of the last interval, 0..1. */
  readonly utilization: number
  stop (): void
}

/**
 * Graduated load shedding on the event loop's own saturation. An on/off switch sampled every half second
 * (under-pressure's model) swings between rejecting everything and letting a flood into a saturated loop, where
 * admitted requests then run out of time. This controller sheds a *share* of requests instead, steering two signals
 * to their targets: utilisation (a loop busy all the time, even in short iterations, leaves requests unread in socket
 * buffers; queueing delay explodes above about 0.9) and delay (long iterations: a blocking stretch of work). The share
 * rises quickly while either is over its target and falls slowly once both are well under. Both measure this process,
 * so a slow upstream (which only makes requests wait on I/O) never causes shedding.
 */
export function createShedController ({ targetDelayMs, targetUtilization, intervalMs, increaseStep = 0.1, decreaseStep = 0.02 }: ShedControllerOptions): ShedController {
  const lag = sampleEventLoopLag()
  let lastUtilization = performance.eventLoopUtilization()
  let probability = 0
  let delayMs = 0
  let utilization = 0
  const timer = setInterval(() => {
    delayMs = lag.take().maxMs
    const current = performance.eventLoopUtilization()
    utilization = performance.eventLoopUtilization(current, lastUtilization).utilization
    lastUtilization = current
    const overDelay = targetDelayMs > 0 && delayMs > targetDelayMs
    const overUtilization = targetUtilization > 0 && utilization > targetUtilization
    const wellUnder = (targetDelayMs === 0 || delayMs < targetDelayMs / 2) && (targetUtilization === 0 || utilization < targetUtilization - 0.1)
    if (overDelay || overUtilization) probability = Math.min(0.99, probability + increaseStep)
    else if (wellUnder) probability = Math.max(0, probability - decreaseStep)
  }, intervalMs)
  timer.unref()
  return {
    shouldShed: () => probability > 0 && Math.random() < probability,
    get probability () { return probability },
    get delayMs () { return delayMs },
    get utilization () { return utilization },
    stop () {
      clearInterval(timer)
      lag.stop()
    }
  }
}
