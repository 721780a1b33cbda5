import { UPSTREAM_NAMES, UPSTREAMS, type UpstreamName } from '../contract/upstreams.js'
import { EMPTY_INVENTORY_SUMMARY, summariseInventory, type InventorySummary } from './inventory-summary.js'
import { EMPTY_LOYALTY_SUMMARY, loyaltyProgress, type LoyaltySummary } from './loyalty-progress.js'
import { EMPTY_ORDERS_SUMMARY, summariseOrders, type OrdersSummary } from './order-statistics.js'
import {
  parseJson, readInventory, readLoyalty, readOrders, readProfile, readRecommendations,
  type InventoryPayload, type LoyaltyPayload, type OrdersPayload, type ProfilePayload, type RecommendationsPayload
} from '../contract/payloads.js'
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
  /** Valid fresh bodies to hand back (to refresh the last-good cache); all of them when one was malformed. */
  returnBodies?: UpstreamName[]
  /** Most JSON values each body may hold (UPSTREAM_<NAME>_MAX_BODY_ELEMENTS); the registry's defaults otherwise. */
  maxBodyElements?: Partial<Record<UpstreamName, number>>
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
  /**
   * Fresh bodies that went through the whole merge, handed back so the caller can keep them as last-good values: those
   * in `returnBodies`, or every one when a body was malformed (the caller may merge again with a last-good value).
   */
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

function tryRead<Name extends UpstreamName> (name: Name, body: Uint8Array, maxElements: number): Payloads[Name] | undefined {
  try {
    return READERS[name](parseJson(body, maxElements))
  } catch {
    return undefined
  }
}

type Built = { built: Required<AggregateSections>, candidatesScored: number } | { unusable: UpstreamName }

/** The sections built from the usable payloads, or which payload made its section come out non-finite. */
function buildSections (payloads: Partial<Payloads>, topK: number): Built {
  const { profile, orders, recommendations, inventory, loyalty } = payloads
  const ordersSummary = orders ? summariseOrders(orders) : EMPTY_ORDERS_SUMMARY
  if (orders && !allFinite(ordersSummary)) return { unusable: 'orders' }
  const loyaltySummary = loyalty ? loyaltyProgress(loyalty) : EMPTY_LOYALTY_SUMMARY
  if (loyalty && !allFinite(loyaltySummary)) return { unusable: 'loyalty' }
  const inventorySummary = inventory ? summariseInventory(inventory) : EMPTY_INVENTORY_SUMMARY
  const rank = (history: OrdersPayload['orders']) => recommendations
    ? rankRecommendations({
      candidates: recommendations.candidates,
      orders: history,
      stock: inventory ? new Map(inventory.items.map((item) => [item.productId, item])) : null,
      categoryShare: new Map(ordersSummary.spendByCategory.map(({ category, share }) => [category, share])),
      favouriteCategories: profile?.preferences.favouriteCategories ?? [],
      topK
    })
    : { ranked: [], candidatesScored: 0 }
  const { ranked, candidatesScored } = rank(orders?.orders ?? [])
  if (!allFinite(ranked)) {
    // A ranking goes non-finite through the candidates' numbers or the order history they are compared with: the
    // history is to blame when the same candidates rank finitely without it.
    const historyToBlame = orders !== undefined && allFinite(rank([]).ranked)
    return { unusable: historyToBlame ? 'orders' : 'recommendations' }
  }
  return {
    built: { profile: profile!, orders: ordersSummary, recommendations: ranked, inventory: inventorySummary, loyalty: loyaltySummary },
    candidatesScored
  }
}

/** Whether every number in a (small) merged section is finite: a body can be valid JSON and still overflow. */
function allFinite (value: unknown): boolean {
  if (typeof value === 'number') return Number.isFinite(value)
  if (typeof value !== 'object' || value === null) return true
  if (Array.isArray(value)) return value.every(allFinite)
  for (const key in value) if (!allFinite((value as Record<string, unknown>)[key])) return false
  return true
}

/**
 * Parses every upstream body and builds the aggregate: order statistics, recommendations ranked against the order
 * history and filtered by stock, inventory and loyalty summaries. Pure and synchronous, so it runs the same in a worker
 * thread or inline; a section whose body is unusable — unparseable, the wrong shape, over its structural budget, or
 * with numbers that overflow in the merge — falls back to the stale body, then to its default or nothing.
 */
export function mergeSections (input: MergeInput): MergeResult {
  const sources = {} as Record<UpstreamName, SectionSource>
  const malformed: UpstreamName[] = []
  const payloads: Partial<Payloads> = {}
  const freshUsed: UpstreamName[] = []
  let bytesParsed = 0
  const maxElements = (name: UpstreamName) => input.maxBodyElements?.[name] ?? UPSTREAMS[name].defaultMaxBodyElements

  function useFallback (name: UpstreamName, tryStale: boolean) {
    const { stale, otherwise } = input.sections[name]
    const payload = tryStale && stale ? tryRead(name, stale, maxElements(name)) : undefined
    if (tryStale) bytesParsed += stale?.byteLength ?? 0
    sources[name] = payload !== undefined ? 'stale' : otherwise === 'default' ? 'default' : 'omitted'
    if (payload !== undefined) (payloads as Record<UpstreamName, unknown>)[name] = payload
    else delete payloads[name]
  }

  for (const name of UPSTREAM_NAMES) {
    const { fresh } = input.sections[name]
    bytesParsed += fresh?.byteLength ?? 0
    const payload = fresh && tryRead(name, fresh, maxElements(name))
    if (payload !== undefined) {
      sources[name] = 'fresh'
      freshUsed.push(name)
      ;(payloads as Record<UpstreamName, unknown>)[name] = payload
    } else {
      if (fresh) malformed.push(name)
      useFallback(name, true)
    }
  }

  // Each round drops one payload whose section overflowed and builds again; a stale value that overflows too is
  // dropped for good. At most two rounds per upstream.
  let result = buildSections(payloads, input.topK)
  while ('unusable' in result) {
    const name = result.unusable
    if (sources[name] === 'fresh') {
      malformed.push(name)
      freshUsed.splice(freshUsed.indexOf(name), 1)
      useFallback(name, true)
    } else {
      useFallback(name, false)
    }
    result = buildSections(payloads, input.topK)
  }

  const sections: AggregateSections = {}
  for (const name of UPSTREAM_NAMES) {
    if (sources[name] !== 'omitted') (sections as Record<UpstreamName, unknown>)[name] = result.built[name]
  }
  const validFresh: MergeResult['validFresh'] = {}
  for (const name of freshUsed) {
    if (malformed.length > 0 || input.returnBodies?.includes(name) === true) validFresh[name] = input.sections[name].fresh!
  }
  return { sections, sources, malformed, validFresh, work: { candidatesScored: result.candidatesScored, bytesParsed } }
}
