import type { OrdersPayload } from '../contract/payloads.js'

export interface OrdersSummary {
  count: number
  cancelledCount: number
  totalSpend: number
  averageOrderValue: number
  basketSize: { mean: number, median: number, p90: number, max: number }
  spendByMonth: Array<{ month: string, amount: number }>
  spendByCategory: Array<{ category: string, amount: number, share: number }>
  lastOrderAt: string | null
}

export const EMPTY_ORDERS_SUMMARY: OrdersSummary = Object.freeze({
  count: 0,
  cancelledCount: 0,
  totalSpend: 0,
  averageOrderValue: 0,
  basketSize: Object.freeze({ mean: 0, median: 0, p90: 0, max: 0 }),
  spendByMonth: Object.freeze([]) as unknown as OrdersSummary['spendByMonth'],
  spendByCategory: Object.freeze([]) as unknown as OrdersSummary['spendByCategory'],
  lastOrderAt: null
})

const cents = (amount: number) => Math.round(amount * 100) / 100

/** Nearest-rank percentile of an ascending array. */
function percentile (sorted: number[], fraction: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)] ?? 0
}

/**
 * Spend by month and by category, basket sizes and order value over the orders that were not cancelled.
 */
export function summariseOrders ({ orders }: OrdersPayload): OrdersSummary {
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
