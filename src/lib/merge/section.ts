/**
 * What a section module (src/lib/merge/sections/<upstream>.ts, named by the upstream's declaration) provides: how to
 * build its part of the response from its upstream's validated payload. Sections are built in registry order; a later
 * one may read the payloads and earlier sections it depends on (recommendations reads orders, inventory and profile).
 */
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

export interface SectionBuilder<Payload = never, Section = unknown> {
  build (payload: Payload, context: SectionContext): Section
}

/**
 * Thrown by a builder when a payload is valid JSON of the right shape but unusable (its numbers overflow in the merge);
 * `upstream` names the payload to blame, which may be a dependency's.
 */
export class UnusablePayloadError extends Error {
  readonly code = 'AGG_ERR_UNUSABLE_PAYLOAD'
  constructor (readonly upstream: string) {
    super(`the ${upstream} payload is unusable`)
    this.name = 'UnusablePayloadError'
  }
}

/** Whether every number in a (small) merged section is finite: a body can be valid JSON and still overflow. */
export function allFinite (value: unknown): boolean {
  if (typeof value === 'number') return Number.isFinite(value)
  if (typeof value !== 'object' || value === null) return true
  if (Array.isArray(value)) return value.every(allFinite)
  for (const key in value) if (!allFinite((value as Record<string, unknown>)[key])) return false
  return true
}
