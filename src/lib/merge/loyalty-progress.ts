import type { LoyaltyEvent, LoyaltyPayload } from '../contract/payloads.js'

export interface LoyaltySummary {
  points: number
  tier: string | null
  nextTier: string | null
  pointsToNextTier: number | null
  /** Progress from the current tier's threshold to the next one, 0..1 (1 at the top tier). */
  progress: number
  lifetimeEarned: number
  recentActivity: LoyaltyEvent[]
}

export const EMPTY_LOYALTY_SUMMARY: LoyaltySummary = Object.freeze({
  points: 0,
  tier: null,
  nextTier: null,
  pointsToNextTier: null,
  progress: 0,
  lifetimeEarned: 0,
  recentActivity: Object.freeze([]) as unknown as LoyaltyEvent[]
})

const RECENT_ACTIVITY = 5

/** Where the user stands in the tier ladder, what they earned in total, and their latest activity. */
export function loyaltyProgress ({ points, tier, tiers, history }: LoyaltyPayload): LoyaltySummary {
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
