import { Compile, type Validator } from 'typebox/compile'
import type { Fallback } from '../contract/response.js'
import type { SectionBuilder, SectionContext, UpstreamDeclaration, UpstreamName, UpstreamRegistry } from '../contract/upstreams.js'
import { exceedsJsonBudget, MAX_JSON_DEPTH } from './json-budget.js'
import { allFinite, UnusablePayloadError } from './section.js'

/** What the merge gets for one upstream: this call's body, the last good one, and what to do if neither is usable. */
export interface SectionInput {
  fresh?: Uint8Array
  stale?: Uint8Array
  otherwise: 'default' | 'omit'
}

export interface MergeInput {
  userId: string
  topK: number
  sections: Record<UpstreamName, SectionInput>
  /** Valid fresh bodies to hand back (to refresh the last-good cache); all of them when one was malformed. */
  returnBodies?: UpstreamName[]
  /** Most JSON values each body may hold (UPSTREAM_<NAME>_MAX_BODY_ELEMENTS); the registry's defaults otherwise. */
  maxBodyElements?: Partial<Record<UpstreamName, number>>
}

/** Work a merge did, counted across every thread (see src/workers/shared-counters.ts). */
export const MERGE_WORK_COUNTERS = ['tasks', 'candidatesScored', 'bytesParsed', 'malformedBodies'] as const

/** Adds one merge's work to the shared counters: the same accounting whether it ran in a worker or inline. */
export function countMergeWork (counters: { add (name: typeof MERGE_WORK_COUNTERS[number], amount?: number): void }, result: MergeResult): void {
  counters.add('tasks')
  counters.add('candidatesScored', result.work.candidatesScored)
  counters.add('bytesParsed', result.work.bytesParsed)
  counters.add('malformedBodies', result.malformed.length)
}

export interface MergeResult {
  /** The response's sections by upstream; an omitted section is absent. */
  sections: Record<UpstreamName, unknown>
  /** Where each section came from: its fresh body (`none`: no fallback), or a fallback. */
  sources: Record<UpstreamName, Fallback>
  /** Upstreams whose fresh body was not valid JSON of the expected shape, or was unusable in the merge. */
  malformed: UpstreamName[]
  /**
   * Fresh bodies that went through the whole merge, handed back so the caller can keep them as last-good values: those
   * in `returnBodies`, or every one when a body was malformed (the caller may merge again with a last-good value).
   */
  validFresh: Partial<Record<UpstreamName, Uint8Array>>
  work: { candidatesScored: number, bytesParsed: number }
}

export class MalformedPayloadError extends Error {
  readonly code = 'AGG_ERR_MALFORMED_PAYLOAD'
  constructor (message: string) {
    super(message)
    this.name = 'MalformedPayloadError'
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true })

/**
 * Decodes and parses a body; broken UTF-8 or JSON, or a body over its structural budget (nesting depth, number of
 * values: checked on the bytes before parsing, so a hostile body costs a scan, not a parse), throws
 * {@link MalformedPayloadError}.
 */
export function parseJson (body: Uint8Array, maxElements = Number.POSITIVE_INFINITY): unknown {
  const overBudget = exceedsJsonBudget(body, { maxDepth: MAX_JSON_DEPTH, maxElements })
  if (overBudget !== null) throw new MalformedPayloadError(overBudget)
  try {
    return JSON.parse(decoder.decode(body))
  } catch {
    throw new MalformedPayloadError('body is not valid JSON')
  }
}

interface LoadedUpstream {
  declaration: UpstreamDeclaration
  validator: Validator
  builder: SectionBuilder<unknown>
}

/** The merge of one registry: its payload validators compiled and its section modules loaded, once per thread. */
export interface Merger {
  readonly names: readonly UpstreamName[]
  merge (input: MergeInput): MergeResult
}

/** `importModule` loads a section module by URL (a worker run from source passes tsx's). */
export async function loadMerger (registry: UpstreamRegistry, importModule = async (url: string): Promise<unknown> => import(url)): Promise<Merger> {
  const upstreams: LoadedUpstream[] = await Promise.all(registry.upstreams.map(async (declaration) => ({
    declaration,
    validator: Compile(declaration.payload),
    builder: ((await importModule(declaration.section.module)) as { default: SectionBuilder<unknown> }).default
  })))
  const byName = new Map(upstreams.map((upstream) => [upstream.declaration.name, upstream]))
  return { names: upstreams.map((upstream) => upstream.declaration.name), merge: (input) => mergeSections(upstreams, byName, input) }
}

function read (upstream: LoadedUpstream, body: Uint8Array, maxElements: number): unknown {
  try {
    const json = parseJson(body, maxElements)
    return upstream.validator.Check(json) ? json : undefined
  } catch {
    return undefined
  }
}

type Built = { sections: Record<UpstreamName, unknown>, candidatesScored: number } | { unusable: UpstreamName }

/** The sections, in registry order, from the usable payloads; or which payload made a section unusable. */
function buildSections (upstreams: LoadedUpstream[], input: MergeInput, payloads: Record<UpstreamName, unknown>, sources: Record<UpstreamName, Fallback>): Built {
  const sections: Record<UpstreamName, unknown> = {}
  const context: SectionContext = { userId: input.userId, topK: input.topK, payloads, sections, work: { candidatesScored: 0 } }
  for (const { declaration, builder } of upstreams) {
    const { name } = declaration
    if (sources[name] === 'omitted') continue
    if (!(name in payloads)) {
      sections[name] = declaration.section.default
      continue
    }
    let section: unknown
    try {
      section = builder.build(payloads[name], context)
    } catch (error) {
      // Blame a dependency only while its payload is still in use, so every round drops something.
      const blamed = error instanceof UnusablePayloadError ? error.upstream : name
      return { unusable: blamed in payloads ? blamed : name }
    }
    if (!allFinite(section)) return { unusable: name }
    sections[name] = section
  }
  return { sections, candidatesScored: context.work.candidatesScored }
}

/**
 * Parses and validates every upstream body and builds the aggregate's sections. Pure and synchronous, so it runs the
 * same in a worker thread or inline; a section whose body is unusable — unparseable, the wrong shape, over its
 * structural budget, or with numbers that overflow in the merge — falls back to the stale body, then to its default
 * or nothing.
 */
function mergeSections (upstreams: LoadedUpstream[], byName: ReadonlyMap<UpstreamName, LoadedUpstream>, input: MergeInput): MergeResult {
  const sources: Record<UpstreamName, Fallback> = {}
  const malformed: UpstreamName[] = []
  const payloads: Record<UpstreamName, unknown> = {}
  const freshUsed: UpstreamName[] = []
  let bytesParsed = 0
  const maxElements = (upstream: LoadedUpstream) => input.maxBodyElements?.[upstream.declaration.name] ?? upstream.declaration.defaults.maxBodyElements

  function useFallback (upstream: LoadedUpstream, tryStale: boolean) {
    const { name } = upstream.declaration
    const { stale, otherwise } = input.sections[name]!
    const payload = tryStale && stale ? read(upstream, stale, maxElements(upstream)) : undefined
    if (tryStale) bytesParsed += stale?.byteLength ?? 0
    sources[name] = payload !== undefined ? 'stale' : otherwise === 'default' ? 'default' : 'omitted'
    if (payload !== undefined) payloads[name] = payload
    else delete payloads[name]
  }

  for (const upstream of upstreams) {
    const { name } = upstream.declaration
    const { fresh } = input.sections[name]!
    bytesParsed += fresh?.byteLength ?? 0
    const payload = fresh && read(upstream, fresh, maxElements(upstream))
    if (payload !== undefined) {
      sources[name] = 'none'
      freshUsed.push(name)
      payloads[name] = payload
    } else {
      if (fresh) malformed.push(name)
      useFallback(upstream, true)
    }
  }

  // Each round drops one payload whose section came out unusable and builds again; a stale value that is unusable too
  // is dropped for good. At most two rounds per upstream.
  let result = buildSections(upstreams, input, payloads, sources)
  while ('unusable' in result) {
    const name = result.unusable
    if (sources[name] === 'none') {
      malformed.push(name)
      freshUsed.splice(freshUsed.indexOf(name), 1)
      useFallback(byName.get(name)!, true)
    } else {
      useFallback(byName.get(name)!, false)
    }
    result = buildSections(upstreams, input, payloads, sources)
  }

  const validFresh: MergeResult['validFresh'] = {}
  for (const name of freshUsed) {
    if (malformed.length > 0 || input.returnBodies?.includes(name) === true) validFresh[name] = input.sections[name]!.fresh!
  }
  return { sections: result.sections, sources, malformed, validFresh, work: { candidatesScored: result.candidatesScored, bytesParsed } }
}
