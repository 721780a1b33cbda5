import type { InventoryPayload, OrdersPayload, ProfilePayload, RecommendationsPayload } from '../../contract/payloads.js'
import type { OrdersSection, RecommendationsSection } from '../../contract/sections.js'
import { rankRecommendations } from '../ranking.js'
import type { SectionBuilder, SectionContext } from '../../contract/upstreams.js'
import { allFinite, UnusablePayloadError } from '../section.js'

/**
 * Candidates ranked against the order history, filtered by stock, favouring the profile's categories: reads the
 * orders, inventory and profile payloads and the orders section, when they are there.
 */
const recommendationsSection: SectionBuilder<RecommendationsPayload, RecommendationsSection> = {
  build ({ candidates }, context: SectionContext) {
    const orders = context.payloads.orders as OrdersPayload | undefined
    const inventory = context.payloads.inventory as InventoryPayload | undefined
    const profile = context.payloads.profile as ProfilePayload | undefined
    const ordersSection = context.sections.orders as OrdersSection | undefined
    const rank = (history: OrdersPayload['orders']) => rankRecommendations({
      candidates,
      orders: history,
      stock: inventory ? new Map(inventory.items.map((item) => [item.productId, item])) : null,
      categoryShare: new Map((ordersSection?.spendByCategory ?? []).map(({ category, share }) => [category, share])),
      favouriteCategories: profile?.preferences.favouriteCategories ?? [],
      topK: context.topK
    })
    const { ranked, candidatesScored } = rank(orders?.orders ?? [])
    context.work.candidatesScored += candidatesScored
    if (!allFinite(ranked)) {
      // A ranking goes non-finite through the candidates' numbers or the order history they are compared with: the
      // history is to blame when the same candidates rank finitely without it.
      throw new UnusablePayloadError(orders !== undefined && allFinite(rank([]).ranked) ? 'orders' : 'recommendations')
    }
    return ranked
  }
}
export default recommendationsSection
