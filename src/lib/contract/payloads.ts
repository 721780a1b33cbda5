import Type, { type Static } from 'typebox'

/**
 * The bodies the gateway expects from each upstream, as TypeBox schemas: the merge validates every body against its
 * schema (compiled once), the mocks generate bodies of these types, and a body of the wrong shape is treated like broken
 * JSON. Numbers must be finite (TypeBox's default), so an overflowing `1e999` is malformed, not Infinity in a sum.
 */

export const ProfilePayload = Type.Object({
  id: Type.String(),
  name: Type.String(),
  email: Type.String(),
  tier: Type.String(),
  region: Type.String(),
  createdAt: Type.String(),
  preferences: Type.Object({
    currency: Type.String(),
    language: Type.String(),
    marketingOptIn: Type.Boolean(),
    favouriteCategories: Type.Array(Type.String())
  })
})
export type ProfilePayload = Static<typeof ProfilePayload>

export const OrderLine = Type.Object({ productId: Type.String(), category: Type.String(), unitPrice: Type.Number(), quantity: Type.Number() })
export type OrderLine = Static<typeof OrderLine>
export const Order = Type.Object({
  id: Type.String(),
  placedAt: Type.String(),
  status: Type.Union([Type.Literal('delivered'), Type.Literal('shipped'), Type.Literal('cancelled')]),
  items: Type.Array(OrderLine),
  total: Type.Number()
})
export type Order = Static<typeof Order>
export const OrdersPayload = Type.Object({ userId: Type.String(), orders: Type.Array(Order) })
export type OrdersPayload = Static<typeof OrdersPayload>

export const Candidate = Type.Object({
  productId: Type.String(),
  title: Type.String(),
  category: Type.String(),
  price: Type.Number(),
  popularity: Type.Number(),
  features: Type.Array(Type.Number())
})
export type Candidate = Static<typeof Candidate>
export const RecommendationsPayload = Type.Object({ userId: Type.String(), candidates: Type.Array(Candidate) })
export type RecommendationsPayload = Static<typeof RecommendationsPayload>

export const StockLevel = Type.Object({ productId: Type.String(), available: Type.Number(), warehouse: Type.String() })
export type StockLevel = Static<typeof StockLevel>
export const InventoryPayload = Type.Object({ region: Type.String(), items: Type.Array(StockLevel) })
export type InventoryPayload = Static<typeof InventoryPayload>

export const LoyaltyEvent = Type.Object({ at: Type.String(), delta: Type.Number(), reason: Type.String() })
export type LoyaltyEvent = Static<typeof LoyaltyEvent>
export const LoyaltyPayload = Type.Object({
  userId: Type.String(),
  points: Type.Number(),
  tier: Type.String(),
  tiers: Type.Array(Type.Object({ name: Type.String(), threshold: Type.Number() })),
  history: Type.Array(LoyaltyEvent)
})
export type LoyaltyPayload = Static<typeof LoyaltyPayload>
