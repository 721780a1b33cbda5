import { describe, expect, it } from 'vitest'
import { inventoryFor, recommendationsFor } from '../../mock-services/data.js'

describe('mock data', () => {
  it('stocks every recommended candidate in the user\'s inventory, so the merge can rank them all', () => {
    for (const scale of [0.05, 1, 3]) {
      for (const userId of ['u-1', 'batch-user-9999', 'ünïcode "quoted"']) {
        const stocked = new Set(inventoryFor(userId, scale).items.map((item) => item.productId))
        const candidates = recommendationsFor(userId, scale).candidates
        expect(candidates.length).toBeGreaterThan(0)
        for (const candidate of candidates) expect(stocked, candidate.productId).toContain(candidate.productId)
      }
    }
  })
})
