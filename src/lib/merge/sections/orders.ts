import type { OrdersPayload } from '../../contract/payloads.js'
import type { OrdersSection } from '../../contract/sections.js'
import { percentile } from '../../percentile.js'
import type { SectionBuilder } from '../../contract/upstreams.js'

const cents = (amount: number) => Math.round(amount * 100) / 100

/**
 * Spend by month and by category, basket sizes and order value over the orders that were not cancelled.
 */
export function summariseOrders ({ orders }: OrdersPayload): OrdersSection {
  const byMonth = new Map<string, number>()
  const byCategory = new Map<string, number>()
  const basketSizes: number[] = []
  let totalSpend = 0
  let cancelledCount = 0
  let lastOrderAt: string | null = null

  for (const order of orders) {
    if (order.status === 'cancelled') {
      cancelledCount++
      continue
    }
    let basketSize = 0
    for (const line of order.items) {
      const amount = line.unitPrice * line.quantity
      byCategory.set(line.category, (byCategory.get(line.category) ?? 0) + amount)
      basketSize += line.quantity
    }
    basketSizes.push(basketSize)
    totalSpend += order.total
    const month = order.placedAt.slice(0, 7)
    byMonth.set(month, (byMonth.get(month) ?? 0) + order.total)
    if (lastOrderAt === null || order.placedAt > lastOrderAt) lastOrderAt = order.placedAt
  }

  basketSizes.sort((left, right) => left - right)
  const count = basketSizes.length
  const categoryTotal = [...byCategory.values()].reduce((sum, amount) => sum + amount, 0) || 1
  return {
    count,
    cancelledCount,
    totalSpend: cents(totalSpend),
    averageOrderValue: count === 0 ? 0 : cents(totalSpend / count),
    basketSize: {
      mean: count === 0 ? 0 : Math.round((basketSizes.reduce((sum, size) => sum + size, 0) / count) * 100) / 100,
      median: percentile(basketSizes, 0.5),
      p90: percentile(basketSizes, 0.9),
      max: basketSizes.at(-1) ?? 0
    },
    spendByMonth: [...byMonth].sort(([left], [right]) => left.localeCompare(right)).map(([month, amount]) => ({ month, amount: cents(amount) })),
    spendByCategory: [...byCategory]
      .sort(([, left], [, right]) => right - left)
      .map(([category, amount]) => ({ category, amount: cents(amount), share: Math.round((amount / categoryTotal) * 1000) / 1000 })),
    lastOrderAt
  }
}

const ordersSection: SectionBuilder<OrdersPayload, OrdersSection> = { build: summariseOrders }
export default ordersSection
