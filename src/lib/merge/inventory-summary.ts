import type { InventoryPayload } from '../contract/payloads.js'

export interface InventorySummary {
  region: string | null
  trackedProducts: number
  inStock: number
  outOfStock: number
  lowStock: number
}

export const EMPTY_INVENTORY_SUMMARY: InventorySummary = Object.freeze({ region: null, trackedProducts: 0, inStock: 0, outOfStock: 0, lowStock: 0 })

// At or below this many units a product counts as running low.
const LOW_STOCK_UNITS = 5

export function summariseInventory ({ region, items }: InventoryPayload): InventorySummary {
  let inStock = 0
  let lowStock = 0
  for (const item of items) {
    if (item.available > 0) inStock++
    if (item.available > 0 && item.available <= LOW_STOCK_UNITS) lowStock++
  }
  return { region, trackedProducts: items.length, inStock, outOfStock: items.length - inStock, lowStock }
}
