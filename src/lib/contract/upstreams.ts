import type { TSchema } from 'typebox'
import { InventoryPayload, LoyaltyPayload, OrdersPayload, ProfilePayload, RecommendationsPayload } from './payloads.js'
import { EMPTY_INVENTORY, EMPTY_LOYALTY, EMPTY_ORDERS, InventorySection, LoyaltySection, OrdersSection, ProfileSection, RecommendationsSection } from './sections.js'

/**
 * What an optional upstream's section becomes when the upstream fails:
 * `stale-or-default` serves the user's last good value if one is cached, else the section's default value;
 * `stale-or-omit` serves the last good value, else leaves the section out; `default` and `omit` skip the cache.
 */
export const FALLBACK_POLICIES = ['stale-or-default', 'stale-or-omit', 'default', 'omit'] as const
export type FallbackPolicy = typeof FALLBACK_POLICIES[number]

/**
 * What a section module provides (the default export of the module an upstream's declaration names): how to build its
 * part of the response from its upstream's validated payload. Sections are built in registry order; a later one may
 * read the payloads and earlier sections it depends on (recommendations reads orders, inventory and profile).
 */
export interface SectionBuilder<Payload = never, Section = unknown> {
  build (payload: Payload, context: SectionContext): Section
}

export interface SectionContext {
  readonly userId: string
  readonly topK: number
  /** Every usable payload of this merge, fresh or stale, by upstream. */
  readonly payloads: Readonly<Record<string, unknown>>
  /** The sections built so far, defaults included. */
  readonly sections: Readonly<Record<string, unknown>>
  /** The merge's work, for the shared counters. */
  readonly work: { candidatesScored: number }
}

/**
 * One upstream, declared once. Its environment variables (`UPSTREAM_<NAME>_…`), client, bulkhead, metrics labels,
 * dashboard panel, response section and OpenAPI schema, and the mocks' route all derive from this declaration.
 */
export interface UpstreamDeclaration {
  readonly name: string
  /** Path of the user's resource; `{userId}` is replaced by the URL-encoded id. */
  readonly path: string
  /** A required upstream has no fallback: when it fails, the whole request fails. */
  readonly required: boolean
  /** The body the upstream answers with; a body that does not match is malformed. */
  readonly payload: TSchema
  readonly section: {
    /** The section of the response this upstream feeds. */
    readonly schema: TSchema
    /** URL of the module that builds the section from the payload: its default export is a {@link SectionBuilder}. */
    readonly module: string
    /** The section's value under the `default` fallback (optional upstreams only). */
    readonly default?: unknown
  }
  readonly defaults: {
    /** Port of its mock (and the default URL's). */
    readonly port: number
    readonly timeoutMs: number
    readonly concurrency: number
    readonly maxQueue: number
    /**
     * Largest body accepted: at least 3× the body at payload scale 10 (test/lib/merge/json-budget.test.ts), so a heavy
     * user passes and a hostile or runaway body is cut off by undici before it is buffered whole.
     */
    readonly maxBodyBytes: number
    /**
     * Most JSON values a body may hold, counted on the raw bytes before parsing, so a body of a million tiny arrays
     * costs a scan, not a parse: at least 3× a body at payload scale 10.
     */
    readonly maxBodyElements: number
    readonly fallback: FallbackPolicy
  }
}

/** The upstreams of a gateway, and the module that exports them (`registry`), so a worker thread can load the same. */
export interface UpstreamRegistry {
  readonly module: string
  readonly upstreams: readonly UpstreamDeclaration[]
}

export type UpstreamName = string

const MiB = 1024 * 1024
const section = (name: string) => new URL(`../merge/sections/${name}.js`, import.meta.url).href
const common = { timeoutMs: 200, concurrency: 50, maxQueue: 100, fallback: 'stale-or-default' } as const

/** The five upstreams this gateway aggregates; the order is the merge's and the response's. */
export const registry: UpstreamRegistry = Object.freeze({
  module: import.meta.url,
  upstreams: Object.freeze([
    {
      name: 'profile',
      path: '/users/{userId}',
      required: true,
      payload: ProfilePayload,
      section: { schema: ProfileSection, module: section('profile') },
      defaults: { ...common, port: 4001, maxBodyBytes: 64 * 1024, maxBodyElements: 1_000 }
    },
    {
      name: 'orders',
      path: '/users/{userId}/orders',
      required: false,
      payload: OrdersPayload,
      section: { schema: OrdersSection, module: section('orders'), default: EMPTY_ORDERS },
      defaults: { ...common, port: 4002, maxBodyBytes: MiB, maxBodyElements: 64_000 }
    },
    {
      name: 'recommendations',
      path: '/users/{userId}/recommendations',
      required: false,
      payload: RecommendationsPayload,
      section: { schema: RecommendationsSection, module: section('recommendations'), default: [] },
      defaults: { ...common, port: 4003, maxBodyBytes: 4 * MiB, maxBodyElements: 250_000 }
    },
    {
      name: 'inventory',
      path: '/users/{userId}/inventory',
      required: false,
      payload: InventoryPayload,
      section: { schema: InventorySection, module: section('inventory'), default: EMPTY_INVENTORY },
      defaults: { ...common, port: 4004, maxBodyBytes: MiB, maxBodyElements: 64_000 }
    },
    {
      name: 'loyalty',
      path: '/users/{userId}/loyalty',
      required: false,
      payload: LoyaltyPayload,
      section: { schema: LoyaltySection, module: section('loyalty'), default: EMPTY_LOYALTY },
      defaults: { ...common, port: 4005, maxBodyBytes: 256 * 1024, maxBodyElements: 8_000 }
    }
  ])
})

/** The names of the built-in upstreams, typed: for tools and tests that work with the built-in registry. */
export const UPSTREAM_NAMES = ['profile', 'orders', 'recommendations', 'inventory', 'loyalty'] as const
export type BuiltInUpstream = typeof UPSTREAM_NAMES[number]

/** The path of a user's resource on an upstream; the id is always URL-encoded. */
export function pathFor (declaration: Pick<UpstreamDeclaration, 'path'>, userId: string): string {
  return declaration.path.replace('{userId}', encodeURIComponent(userId))
}

/** `UPSTREAM_<NAME>_<SETTING>`, the environment variable naming scheme for per-upstream settings. */
export function upstreamVariable (name: UpstreamName, setting: string): string {
  return `UPSTREAM_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_${setting}`
}
