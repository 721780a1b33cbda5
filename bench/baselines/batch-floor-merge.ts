import { mergeSections } from '../lib/merge.js'

/** A piscina thread of the floor's batch: one user's bodies merged into its NDJSON line. */
export default function mergeLine ({ userId, bodies }: { userId: string, bodies: Record<string, Uint8Array> }): string {
  return JSON.stringify({ userId, ...mergeSections(userId, bodies) })
}
