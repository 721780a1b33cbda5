import { describe, expect, it } from 'vitest'
import { inventoryFor, loyaltyFor, ordersFor, profileFor, recommendationsFor } from '../../../mock-services/data.js'
import type { InventorySection, LoyaltySection, OrdersSection, ProfileSection, RecommendationsSection } from '../../../src/lib/contract/sections.js'
import { UPSTREAM_NAMES, type BuiltInUpstream as UpstreamName } from '../../../src/lib/contract/upstreams.js'
import type { MergeInput, SectionInput } from '../../../src/lib/merge/merge-sections.js'
import { merger } from '../../helpers/merge.js'

interface Sections { profile: ProfileSection, orders: OrdersSection, recommendations: RecommendationsSection, inventory: InventorySection, loyalty: LoyaltySection }

/** The built-in merge, with its sections typed. */
function mergeSections (input: MergeInput) {
  const result = merger.merge(input)
  return { ...result, sections: result.sections as Partial<Sections> }
}

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

function bodiesFor (userId: string): Record<UpstreamName, Uint8Array> {
  return {
    profile: encode(profileFor(userId)),
    orders: encode(ordersFor(userId, 1)),
    recommendations: encode(recommendationsFor(userId, 1)),
    inventory: encode(inventoryFor(userId, 1)),
    loyalty: encode(loyaltyFor(userId, 1))
  }
}

function input (userId: string, overrides: Partial<Record<UpstreamName, SectionInput>> = {}): MergeInput {
  const bodies = bodiesFor(userId)
  const sections = Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, overrides[name] ?? { fresh: bodies[name], otherwise: 'default' }]))
  return { userId, topK: 10, sections: sections as MergeInput['sections'] }
}

describe('mergeSections', () => {
  it('ranks in-stock candidates the user has not bought, best first', () => {
    const result = mergeSections(input('user-1'))
    const recommendations = result.sections.recommendations!
    expect(recommendations).toHaveLength(10)
    const stock = new Map(inventoryFor('user-1', 1).items.map((item) => [item.productId, item.available]))
    const bought = new Set(ordersFor('user-1', 1).orders.flatMap((order) => order.items.map((item) => item.productId)))
    for (const item of recommendations) {
      expect(stock.get(item.productId)).toBeGreaterThan(0)
      expect(item.available).toBe(stock.get(item.productId))
      expect(bought.has(item.productId)).toBe(false)
    }
    expect(new Set(recommendations.map((item) => item.productId)).size).toBe(10)
  })

  it('summarises spend consistently: categories and months add up to the total', () => {
    const { orders } = mergeSections(input('user-2')).sections
    const byMonth = orders!.spendByMonth.reduce((sum, month) => sum + month.amount, 0)
    expect(byMonth).toBeCloseTo(orders!.totalSpend, 0)
    expect(orders!.spendByCategory.reduce((sum, category) => sum + category.share, 0)).toBeCloseTo(1, 1)
    expect(orders!.basketSize.median).toBeLessThanOrEqual(orders!.basketSize.p90)
  })

  it('falls back from a malformed body to the stale one, then to the default', () => {
    const broken = new TextEncoder().encode('{"userId": "user-3", "orders": [')
    const stale = bodiesFor('user-3').orders
    const withStale = mergeSections(input('user-3', { orders: { fresh: broken, stale, otherwise: 'default' } }))
    expect(withStale.sources.orders).toBe('stale')
    expect(withStale.malformed).toEqual(['orders'])
    expect(withStale.sections.orders!.count).toBeGreaterThan(0)
    expect(withStale.validFresh.orders).toBeUndefined()

    const withoutStale = mergeSections(input('user-3', { orders: { fresh: broken, otherwise: 'default' } }))
    expect(withoutStale.sources.orders).toBe('default')
    expect(withoutStale.sections.orders!.count).toBe(0)
  })

  it('treats valid JSON of the wrong shape as malformed', () => {
    const result = mergeSections(input('user-4', { loyalty: { fresh: encode({ points: 'many' }), otherwise: 'omit' } }))
    expect(result.malformed).toEqual(['loyalty'])
    expect(result.sources.loyalty).toBe('omitted')
    expect('loyalty' in result.sections).toBe(false)
  })

  it('keeps every candidate unfiltered (stock unknown) when inventory is missing', () => {
    const result = mergeSections(input('user-5', { inventory: { otherwise: 'default' } }))
    expect(result.sources.inventory).toBe('default')
    expect(result.sections.recommendations!.filter((item) => item.available !== null), 'recommendations with a stock level').toEqual([])
  })

  it('hands back only the valid fresh bodies it was asked for, and every valid one when a body was malformed', () => {
    expect(Object.keys(mergeSections(input('user-6')).validFresh)).toEqual([])
    expect(Object.keys(mergeSections({ ...input('user-6'), returnBodies: ['orders', 'loyalty'] }).validFresh).sort()).toEqual(['loyalty', 'orders'])
    const withMalformed = mergeSections(input('user-6', { loyalty: { fresh: encode({ points: 'many' }), otherwise: 'omit' } }))
    expect(Object.keys(withMalformed.validFresh).sort()).toEqual(['inventory', 'orders', 'profile', 'recommendations'])
  })
})
