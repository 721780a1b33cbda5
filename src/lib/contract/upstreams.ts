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
   * Largest body accepted by default: at least 3× the body at payload scale 10 (test/lib/json-budget.test.ts),
   * so a heavy user passes and a hostile or runaway body is cut off by undici before it is buffered whole.
   */
  readonly defaultMaxBodyBytes: number
  /**
   * Most JSON values (containers and elements) a body may hold, checked on the raw bytes before it is parsed: at least
   * 3× a body at payload scale 10 (test/lib/json-budget.test.ts), so a body of a million tiny arrays costs a scan, not a parse (src/lib/merge/json-budget.ts).
   */
  readonly defaultMaxBodyElements: number
}

const userPath = (suffix: string) => (userId: string) => `/users/${encodeURIComponent(userId)}${suffix}`
const MiB = 1024 * 1024

export const UPSTREAMS: Readonly<Record<UpstreamName, UpstreamDefinition>> = Object.freeze({
  profile: { name: 'profile', required: true, pathFor: userPath(''), defaultPort: 4001, defaultMaxBodyBytes: 64 * 1024, defaultMaxBodyElements: 1_000 },
  orders: { name: 'orders', required: false, pathFor: userPath('/orders'), defaultPort: 4002, defaultMaxBodyBytes: MiB, defaultMaxBodyElements: 64_000 },
  recommendations: { name: 'recommendations', required: false, pathFor: userPath('/recommendations'), defaultPort: 4003, defaultMaxBodyBytes: 4 * MiB, defaultMaxBodyElements: 250_000 },
  inventory: { name: 'inventory', required: false, pathFor: userPath('/inventory'), defaultPort: 4004, defaultMaxBodyBytes: MiB, defaultMaxBodyElements: 64_000 },
  loyalty: { name: 'loyalty', required: false, pathFor: userPath('/loyalty'), defaultPort: 4005, defaultMaxBodyBytes: 256 * 1024, defaultMaxBodyElements: 8_000 }
})

/** `UPSTREAM_<NAME>_<SETTING>`, the environment variable naming scheme for per-upstream settings. */
export function upstreamVariable (name: UpstreamName, setting: string): string {
  return `UPSTREAM_${name.toUpperCase()}_${setting}`
}
