/**
 * The five upstream services the gateway aggregates, and what the gateway needs to know about each:
 * where its resource lives, whether the response can exist without it, and which port its mock uses by default.
 */
export const UPSTREAM_NAMES = ['profile', 'orders', 'recommendations', 'inventory', 'loyalty'] as const

export type UpstreamName = typeof UPSTREAM_NAMES[number]

export interface UpstreamDefinition {
  readonly name: UpstreamName
  /** A required upstream has no fallback: when it fails, the whole request fails. */
  readonly required: boolean
  /** Path of the user's resource on this upstream; the id is always URL-encoded. */
  readonly pathFor: (userId: string) => string
  readonly defaultPort: number
  /**
   * Largest body accepted by default: about 10× the body at payload scale 10 (checked in test/config.test.ts), so a
   * heavy user passes and a hostile or runaway body is cut off by undici before it is buffered whole.
   */
  readonly defaultMaxBodyBytes: number
}

const userPath = (suffix: string) => (userId: string) => `/users/${encodeURIComponent(userId)}${suffix}`
const MiB = 1024 * 1024

export const UPSTREAMS: Readonly<Record<UpstreamName, UpstreamDefinition>> = Object.freeze({
  profile: { name: 'profile', required: true, pathFor: userPath(''), defaultPort: 4001, defaultMaxBodyBytes: 64 * 1024 },
  orders: { name: 'orders', required: false, pathFor: userPath('/orders'), defaultPort: 4002, defaultMaxBodyBytes: 2 * MiB },
  recommendations: { name: 'recommendations', required: false, pathFor: userPath('/recommendations'), defaultPort: 4003, defaultMaxBodyBytes: 8 * MiB },
  inventory: { name: 'inventory', required: false, pathFor: userPath('/inventory'), defaultPort: 4004, defaultMaxBodyBytes: 2 * MiB },
  loyalty: { name: 'loyalty', required: false, pathFor: userPath('/loyalty'), defaultPort: 4005, defaultMaxBodyBytes: MiB }
})

/** `UPSTREAM_<NAME>_<SETTING>`, the environment variable naming scheme for per-upstream settings. */
export function upstreamVariable (name: UpstreamName, setting: string): string {
  return `UPSTREAM_${name.toUpperCase()}_${setting}`
}
