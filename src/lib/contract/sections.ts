import Type, { type Static, type TSchema } from 'typebox'
import { LoyaltyEvent, ProfilePayload } from './payloads.js'

/**
 * The sections of an aggregate response, as TypeBox schemas, each with the value it takes when its upstream failed and
 * the fallback is `default`. The route serialises with these schemas, so a field missing here never reaches a client.
 */

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()])

export const ProfileSection = ProfilePayload
export type ProfileSection = Static<typeof ProfileSection>

export const OrdersSection = Type.Object({
  count: Type.Integer(),
  cancelledCount: Type.Integer(),
  totalSpend: Type.Number(),
  averageOrderValue: Type.Number(),
  basketSize: Type.Object({ mean: Type.Number(), median: Type.Number(), p90: Type.Number(), max: Type.Number() }),
  spendByMonth: Type.Array(Type.Object({ month: Type.String(), amount: Type.Number() })),
  spendByCategory: Type.Array(Type.Object({ category: Type.String(), amount: Type.Number(), share: Type.Number() })),
  lastOrderAt: Nullable(Type.String())
})
export type OrdersSection = Static<typeof OrdersSection>
export const EMPTY_ORDERS: OrdersSection = {
  count: 0, cancelledCount: 0, totalSpend: 0, averageOrderValue: 0, basketSize: { mean: 0, median: 0, p90: 0, max: 0 }, spendByMonth: [], spendByCategory: [], lastOrderAt: null
}

export const RankedRecommendation = Type.Object({
  productId: Type.String(),
  title: Type.String(),
  category: Type.String(),
  price: Type.Number(),
  score: Type.Number(),
  /** Units in stock, or null when inventory was unavailable and stock could not be checked. */
  available: Nullable(Type.Number())
})
export type RankedRecommendation = Static<typeof RankedRecommendation>
export const RecommendationsSection = Type.Array(RankedRecommendation)
export type RecommendationsSection = Static<typeof RecommendationsSection>

export const InventorySection = Type.Object({
  region: Nullable(Type.String()),
  trackedProducts: Type.Integer(),
  inStock: Type.Integer(),
  outOfStock: Type.Integer(),
  lowStock: Type.Integer()
})
export type InventorySection = Static<typeof InventorySection>
export const EMPTY_INVENTORY: InventorySection = { region: null, trackedProducts: 0, inStock: 0, outOfStock: 0, lowStock: 0 }

export const LoyaltySection = Type.Object({
  points: Type.Number(),
  tier: Nullable(Type.String()),
  nextTier: Nullable(Type.String()),
  pointsToNextTier: Nullable(Type.Number()),
  /** 0..1 of the way from the current tier's threshold to the next one's; 1 at the top tier. */
  progress: Type.Number(),
  lifetimeEarned: Type.Number(),
  recentActivity: Type.Array(LoyaltyEvent)
})
export type LoyaltySection = Static<typeof LoyaltySection>
export const EMPTY_LOYALTY: LoyaltySection = { points: 0, tier: null, nextTier: null, pointsToNextTier: null, progress: 0, lifetimeEarned: 0, recentActivity: [] }
