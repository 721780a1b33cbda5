import { describe, expect, it } from 'vitest'
import { createRateBudget } from '../../../src/lib/resilience/rate-budget.js'

describe('the rate budget', () => {
  it('allows the floor with no calls, then a share of the calls in the window', () => {
    const clock = { now: 0 }
    const budget = createRateBudget({ ratio: 0.2, floor: 2, windowMs: 10_000, now: () => clock.now })
    expect([budget.tryWithdraw(), budget.tryWithdraw(), budget.tryWithdraw()]).toEqual([true, true, false])
    for (let index = 0; index < 100; index++) budget.recordCall()
    let granted = 0
    while (budget.tryWithdraw()) granted++
    // 2 + 0.2 × 100 = 22 in all, 2 of them already taken.
    expect(granted).toBe(20)
    expect(budget.stats()).toEqual({ calls: 100, extra: 22, refused: 2 })
  })

  it('forgets calls and extras older than the window', () => {
    const clock = { now: 0 }
    const budget = createRateBudget({ ratio: 0.5, floor: 0, windowMs: 3000, now: () => clock.now })
    for (let index = 0; index < 10; index++) budget.recordCall()
    for (let index = 0; index < 5; index++) expect(budget.tryWithdraw()).toBe(true)
    expect(budget.tryWithdraw()).toBe(false)
    clock.now += 1000
    for (let index = 0; index < 4; index++) budget.recordCall()
    expect(budget.tryWithdraw()).toBe(true)
    clock.now += 2500
    // The first second's 10 calls and 5 extras are gone; 4 calls and 1 extra remain.
    expect(budget.stats()).toMatchObject({ calls: 4, extra: 1 })
    expect(budget.tryWithdraw()).toBe(true)
    expect(budget.tryWithdraw()).toBe(false)
    clock.now += 60_000
    expect(budget.stats()).toMatchObject({ calls: 0, extra: 0 })
  })
})
