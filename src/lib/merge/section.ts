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
