import { UPSTREAM_NAMES, type UpstreamName } from '../upstreams.js'
import { EMPTY_INVENTORY_SUMMARY, summariseInventory, type InventorySummary } from './inventory-summary.js'
import { EMPTY_LOYALTY_SUMMARY, loyaltyProgress, type LoyaltySummary } from './loyalty-progress.js'
import { EMPTY_ORDERS_SUMMARY, summariseOrders, type OrdersSummary } from './order-statistics.js'
import {
  parseJson, readInventory, readLoyalty, readOrders, readProfile, readRecommendations,
  type InventoryPayload, type LoyaltyPayload, type OrdersPayload, type ProfilePayload, type RecommendationsPayload
} from './payloads.js'
import { rankRecommendations, type RankedRecommendation } from './ranking.js'

/** Where a section of the response came from. */
export type SectionSource = 'fresh' | 'stale' | 'default' | 'omitted'

/** What the merge gets for one upstream: this call's body, the last good one, and what to do if neither is usable. */
export interface SectionInput {
  fresh?: Uint8Array
  stale?: Uint8Array
  otherwise: 'default' | 'omit'
}

export interface MergeInput {
  userId: string
  topK: number
  sections: Record<UpstreamName, SectionInput>
}

export interface AggregateSections {
  profile?: ProfilePayload
  orders?: OrdersSummary
  recommendations?: RankedRecommendation[]
  inventory?: InventorySummary
  loyalty?: LoyaltySummary
}

/** Work a merge did, counted across every thread (see src/lib/shared-counters.ts). */
export const MERGE_WORK_COUNTERS = ['tasks', 'candidatesScored', 'bytesParsed', 'malformedBodies'] as const

/** Adds one merge's work to the shared counters: the same accounting whether it ran in a worker or inline. */
export function countMergeWork (counters: { add (name: typeof MERGE_WORK_COUNTERS[number], amount?: number): void }, result: MergeResult): void {
  counters.add('tasks')
  counters.add('candidatesScored', result.work.candidatesScored)
  counters.add('bytesParsed', result.work.bytesParsed)
  counters.add('malformedBodies', result.malformed.length)
}

export interface MergeResult {
  sections: AggregateSections
  sources: Record<UpstreamName, SectionSource>
  /** Upstreams whose fresh body was not valid JSON of the expected shape. */
  malformed: UpstreamName[]
  /** Fresh bodies that were valid, handed back so the caller can keep them as last-good values. */
  validFresh: Partial<Record<UpstreamName, Uint8Array>>
  work: { candidatesScored: number, bytesParsed: number }
}

interface Payloads {
  profile: ProfilePayload
  orders: OrdersPayload
  recommendations: RecommendationsPayload
  inventory: InventoryPayload
  loyalty: LoyaltyPayload
}

const READERS: { [Name in UpstreamName]: (json: unknown) => Payloads[Name] } = {
  profile: readProfile,
  orders: readOrders,
  recommendations: readRecommendations,
  inventory: readInventory,
  loyalty: readLoyalty
}

function tryRead<Name extends UpstreamName> (name: Name, body: Uint8Array): Payloads[Name] | undefined {
  try {
    return READERS[name](parseJson(body))
  } catch {
    return undefined
  }
}

/**
 * Parses every upstream body and builds the aggregate: order statistics, recommendations ranked against the order
 * history and filtered by stock, inventory and loyalty summaries. Pure and synchronous, so it runs the same in a worker
 * thread or inline; a section whose body is unusable falls back to the stale body, then to its default or nothing.
 */
export function mergeSections (input: MergeInput): MergeResult {
  const sources = {} as Record<UpstreamName, SectionSource>
  const malformed: UpstreamName[] = []
  const validFresh: MergeResult['validFresh'] = {}
  const payloads: Partial<Payloads> = {}
  let bytesParsed = 0

  for (const name of UPSTREAM_NAMES) {
    const { fresh, stale, otherwise } = input.sections[name]
    bytesParsed += (fresh?.byteLength ?? 0) + (stale?.byteLength ?? 0)
    let payload = fresh && tryRead(name, fresh)
    if (payload !== undefined) {
      sources[name] = 'fresh'
      validFresh[name] = fresh
    } else {
      if (fresh) malformed.push(name)
      payload = stale && tryRead(name, stale)
      sources[name] = payload !== undefined ? 'stale' : otherwise === 'default' ? 'default' : 'omitted'
    }
    if (payload !== undefined) (payloads as Record<UpstreamName, unknown>)[name] = payload
  }

  const { profile, orders, recommendations, inventory, loyalty } = payloads
  const ordersSummary = orders ? summariseOrders(orders) : EMPTY_ORDERS_SUMMARY
  const { ranked, candidatesScored } = recommendations
    ? rankRecommendations({
      candidates: recommendations.candidates,
      orders: orders?.orders ?? [],
      stock: inventory ? new Map(inventory.items.map((item) => [item.productId, item])) : null,
      categoryShare: new Map(ordersSummary.spendByCategory.map(({ category, share }) => [category, share])),
      favouriteCategories: profile?.preferences.favouriteCategories ?? [],
      topK: input.topK
    })
    : { ranked: [], candidatesScored: 0 }

  const built: Required<AggregateSections> = {
    profile: profile!,
    orders: ordersSummary,
    recommendations: ranked,
    inventory: inventory ? summariseInventory(inventory) : EMPTY_INVENTORY_SUMMARY,
    loyalty: loyalty ? loyaltyProgress(loyalty) : EMPTY_LOYALTY_SUMMARY
  }
  const sections: AggregateSections = {}
  for (const name of UPSTREAM_NAMES) {
    if (sources[name] !== 'omitted') (sections as Record<UpstreamName, unknown>)[name] = built[name]
  }
  return { sections, sources, malformed, validFresh, work: { candidatesScored, bytesParsed } }
}
