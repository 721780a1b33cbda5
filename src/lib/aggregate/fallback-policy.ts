/**
 * What an optional upstream's section becomes when the upstream fails:
 * `stale-or-default` serves the user's last good value if one is cached, else a static default;
 * `stale-or-omit` serves the last good value, else leaves the section out; `default` and `omit` skip the cache.
 */
export const FALLBACK_POLICIES = ['stale-or-default', 'stale-or-omit', 'default', 'omit'] as const
export type FallbackPolicy = typeof FALLBACK_POLICIES[number]

/** The two decisions a policy makes: whether a last good value may be served, and what comes after it. */
export function fallbackSteps (policy: FallbackPolicy): { useStale: boolean, otherwise: 'default' | 'omit' } {
  return { useStale: policy.startsWith('stale'), otherwise: policy.endsWith('omit') ? 'omit' : 'default' }
}
