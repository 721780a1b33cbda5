import { Compile } from 'typebox/compile'
import { registry, type SectionBuilder } from '../../src/lib/contract/upstreams.js'

// The merge the baselines run, built from the contract alone: each upstream's body decoded and parsed, checked against
// its declared payload schema, and its section built, in registry order, by the module its declaration names: the
// schemas and section modules the gateway's merge threads load. What the gateway's merge does besides (the structural
// budget scanned on the bytes before parsing, the finite-number check, the fallback ladder) is its defence against
// hostile bodies, and counts among what the gateway adds.

const upstreams = await Promise.all(registry.upstreams.map(async (declaration) => ({
  name: declaration.name,
  validator: Compile(declaration.payload),
  builder: ((await import(declaration.section.module)) as { default: SectionBuilder<unknown> }).default
})))
const decoder = new TextDecoder('utf-8', { fatal: true })

/** The response's sections, by upstream, from every upstream's body; throws on a missing or malformed body. */
export function mergeSections (userId: string, bodies: Readonly<Record<string, Uint8Array>>, topK = 10): Record<string, unknown> {
  const payloads: Record<string, unknown> = {}
  for (const { name, validator } of upstreams) {
    const body = bodies[name]
    if (body === undefined) throw new Error(`${name}: no body`)
    const payload: unknown = JSON.parse(decoder.decode(body))
    if (!validator.Check(payload)) throw new Error(`${name}: the body does not match its payload schema`)
    payloads[name] = payload
  }
  const sections: Record<string, unknown> = {}
  const context = { userId, topK, payloads, sections, work: { candidatesScored: 0 } }
  for (const { name, builder } of upstreams) sections[name] = builder.build(payloads[name], context)
  return sections
}
