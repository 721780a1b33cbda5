import Type, { type Static, type TObject, type TSchema } from 'typebox'
import type { UpstreamRegistry } from './upstreams.js'

/** The response contract of GET /aggregate/:userId: validated at the door, serialised on the way out, documented by OpenAPI. */

export const USER_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$'

export const AggregateParams = Type.Object({ userId: Type.String({ pattern: USER_ID_PATTERN, description: 'The user whose aggregate is wanted.' }) }, { additionalProperties: false })
export type AggregateParams = Static<typeof AggregateParams>
export const AggregateQuerystring = Type.Object({}, { additionalProperties: false })

/**
 * What happened to one upstream in one request. `merge-failed`: the call answered, but the merge could not use the
 * answer before the deadline (its thread died or ran out of time). `circuit-open`: no call was made, because the
 * upstream's circuit breaker is open.
 */
const UPSTREAM_STATUSES = ['ok', 'timeout', 'error', 'rejected', 'malformed', 'cancelled', 'merge-failed', 'circuit-open'] as const
export const UpstreamStatus = Type.Enum(UPSTREAM_STATUSES)
export type UpstreamStatus = Static<typeof UpstreamStatus>

/** Where a section came from when not from this call's body: `none` means it did. */
const FALLBACKS = ['none', 'stale', 'default', 'omitted'] as const
export const Fallback = Type.Enum(FALLBACKS)
export type Fallback = Static<typeof Fallback>

export const UpstreamReport = Type.Object({
  status: UpstreamStatus,
  latencyMs: Type.Number(),
  fallback: Fallback,
  /** The upstream's HTTP status when it answered with a non-2xx one. */
  httpStatus: Type.Optional(Type.Integer()),
  attempts: Type.Integer({ minimum: 0, description: 'Requests sent to the upstream for this section: the first, a retry, a hedge (0 when none was sent).' }),
  circuit: Type.Optional(Type.Enum(['closed', 'open', 'half-open'], { description: 'The upstream\'s circuit breaker after this call (absent when it has none).' })),
  hedge: Type.Optional(Type.Enum(['won', 'lost'], { description: 'A hedge was sent because the first request was slower than the upstream\'s recent p95; which answer was used.' })),
  coalesced: Type.Optional(Type.Boolean({ description: 'This request shared another request\'s call for the same user instead of making its own.' }))
})
export type UpstreamReport = Static<typeof UpstreamReport>
export type UpstreamReports = Record<string, UpstreamReport>

/** An aggregate body: the user's id, one section per upstream (an optional one may be omitted), and what each upstream did. */
export interface AggregateBody {
  userId: string
  meta: { complete: boolean, durationMs: number, upstreams: UpstreamReports }
  [section: string]: unknown
}

/** The response schema of a registry's aggregate: one property per upstream's section, required for a required upstream. */
export function aggregateBodySchema (registry: UpstreamRegistry): TObject {
  const properties: Record<string, TSchema> = { userId: Type.String() }
  for (const { name, required, section } of registry.upstreams) properties[name] = required ? section.schema : Type.Optional(section.schema)
  const names = registry.upstreams.map((upstream) => upstream.name)
  properties.meta = Type.Object({
    complete: Type.Boolean({ description: 'Every section came from its upstream\'s answer to this request.' }),
    durationMs: Type.Number(),
    upstreams: Type.Object(Object.fromEntries(names.map((name) => [name, UpstreamReport])))
  })
  return Type.Object(properties, { $id: 'AggregateBody', description: 'One user\'s sections, merged, with what each upstream did.' })
}
