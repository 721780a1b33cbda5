import type { LoyaltyPayload } from '../../contract/payloads.js'
import type { LoyaltySection } from '../../contract/sections.js'
import type { SectionBuilder } from '../../contract/upstreams.js'

const RECENT_ACTIVITY = 5

/** Where the user stands in the tier ladder, what they earned in total, and their latest activity. */
export function loyaltyProgress ({ points, tier, tiers, history }: LoyaltyPayload): LoyaltySection {
  const ladder = [...tiers].sort((left, right) => left.threshold - right.threshold)
  const nextIndex = ladder.findIndex((step) => step.threshold > points)
  const next = nextIndex === -1 ? undefined : ladder[nextIndex]
  const floor = nextIndex > 0 ? ladder[nextIndex - 1]!.threshold : nextIndex === -1 ? (ladder.at(-1)?.threshold ?? 0) : 0
  const span = next ? next.threshold - floor : 0
  return {
    points,
    tier,
    nextTier: next?.name ?? null,
    pointsToNextTier: next ? next.threshold - points : null,
    progress: next ? Math.round(((points - floor) / span) * 1000) / 1000 : 1,
    lifetimeEarned: history.reduce((sum, event) => sum + Math.max(0, event.delta), 0),
    recentActivity: [...history].sort((left, right) => right.at.localeCompare(left.at)).slice(0, RECENT_ACTIVITY)
  }
}

const loyaltySection: SectionBuilder<LoyaltyPayload, LoyaltySection> = { build: loyaltyProgress }
export default loyaltySection
