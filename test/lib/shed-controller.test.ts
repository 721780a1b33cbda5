import { describe, expect, it } from 'vitest'
import { createShedController } from '../../src/lib/shed-controller.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Keeps the event loop busy in slices of `sliceMs`, as a saturated server would, for `durationMs`. */
async function busyLoop (durationMs: number, sliceMs: number) {
  const until = performance.now() + durationMs
  while (performance.now() < until) {
    const sliceEnd = performance.now() + sliceMs
    while (performance.now() < sliceEnd) { /* busy */ }
    await new Promise((resolve) => setImmediate(resolve))
  }
}

describe('the graduated shed controller', () => {
  it('sheds nothing while the event loop keeps up', async () => {
    const controller = createShedController({ targetDelayMs: 50, targetUtilization: 0, intervalMs: 20 })
    try {
      await sleep(200)
      expect(controller.probability).toBe(0)
      expect(Array.from({ length: 1000 }, () => controller.shouldShed()).some(Boolean)).toBe(false)
    } finally {
      controller.stop()
    }
  })

  it('sheds a growing share while the loop lags, and lets it fall once the loop recovers', async () => {
    const controller = createShedController({ targetDelayMs: 20, targetUtilization: 0, intervalMs: 20 })
    try {
      await busyLoop(400, 60)
      const underLoad = controller.probability
      expect(underLoad).toBeGreaterThan(0.3)
      const shed = Array.from({ length: 10_000 }, () => controller.shouldShed()).filter(Boolean).length / 10_000
      expect(shed).toBeGreaterThan(underLoad - 0.05)
      expect(shed).toBeLessThan(underLoad + 0.05)
      await sleep(400)
      expect(controller.probability).toBeLessThan(underLoad)
    } finally {
      controller.stop()
    }
  })
})

describe('the controller on utilisation', () => {
  it('sheds while the loop is busy all the time, even in short iterations that never lag much', async () => {
    const controller = createShedController({ targetDelayMs: 0, targetUtilization: 0.9, intervalMs: 20 })
    try {
      await busyLoop(400, 2)
      expect(controller.utilization).toBeGreaterThan(0.9)
      const underLoad = controller.probability
      expect(underLoad).toBeGreaterThan(0.3)
      await sleep(400)
      expect(controller.probability).toBeLessThan(underLoad)
    } finally {
      controller.stop()
    }
  })
})
