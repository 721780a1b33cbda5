import type { InventoryPayload } from '../../contract/payloads.js'
import type { InventorySection } from '../../contract/sections.js'
import type { SectionBuilder } from '../../contract/upstreams.js'

// At or below this many units a product counts as running low.
const LOW_STOCK_UNITS = 5

export function summariseInventory ({ region, items }: InventoryPayload): InventorySection {
  let inStock = 0
  let lowStock = 0
  for (const item of items) {
    if (item.available > 0) inStock++
    if (item.available > 0 && item.available <= LOW_STOCK_UNITS) lowStock++
  }
  return { region, trackedProducts: items.length, inStock, outOfStock: items.length - inStock, lowStock }
}

const inventorySection: SectionBuilder<InventoryPayload, InventorySection> = { build: summariseInventory }
export default inventorySection
