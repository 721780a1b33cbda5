import { performance } from 'node:perf_hooks'
import { BODY_GENERATORS } from '../mock-services/data.js'
import { exceedsJsonBudget, MAX_JSON_DEPTH, type JsonBudget } from '../src/lib/merge/json-budget.js'
import { registry, UPSTREAM_NAMES } from '../src/lib/contract/upstreams.js'

// The widest budget the gateway uses (recommendations'): the one a hostile body has most room in.
const DEFAULT_JSON_BUDGET: JsonBudget = { maxDepth: MAX_JSON_DEPTH, maxElements: Math.max(...registry.upstreams.map((upstream) => upstream.defaults.maxBodyElements)) }

// What does the structural budget check cost next to the parse it guards?  npx tsx bench/json-budget.ts
// For every upstream's normal body at payload scales 1 and 10, and for 8 MB hostile bodies, the median time of:
//   parse      JSON.parse(new TextDecoder().decode(bytes)), what the worker does today
//   loop       exceedsJsonBudget: one byte loop, strings skipped byte by byte
//   hop        the same loop, but strings skipped with Buffer#indexOf to the next quote
//   table      the same loop, but each byte classified by one lookup in a 256-entry table
// Rounds alternate the candidates so drift (turbo, the other tenant of the machine) hits all alike.
// Also prints each normal body's depth and element count, measured on the parsed value, to choose the default budget.

const ROUNDS = 7
// Each candidate runs for at least this long per round, so short bodies are timed over many calls.
const ROUND_TARGET_MS = 15
const HOSTILE_BYTES = 8 * 1024 * 1024 - 1024
const UNLIMITED: JsonBudget = { maxDepth: Number.POSITIVE_INFINITY, maxElements: Number.POSITIVE_INFINITY }

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const QUOTE = 0x22
const BACKSLASH = 0x5c

/** The candidate that hops over string contents with indexOf instead of looking at every byte. */
function exceedsWithHops (bytes: Uint8Array, budget: JsonBudget): string | null {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const maxDepth = Math.min(budget.maxDepth, 0x3fffffff) | 0
  const maxElements = Math.min(budget.maxElements, 0x3fffffff) | 0
  const length = buffer.length
  let depth = 0
  let elements = 0
  let exceeded: 'depth' | 'elements' | null = null
  let index = 0
  for (; index < length; index++) {
    const byte = buffer[index]!
    if (byte === QUOTE) {
      let end = buffer.indexOf(QUOTE, index + 1)
      // An odd run of backslashes before the quote escapes it: look for the next one.
      while (end !== -1) {
        let backslashes = 0
        while (buffer[end - 1 - backslashes] === BACKSLASH) backslashes++
        if (backslashes % 2 === 0) break
        end = buffer.indexOf(QUOTE, end + 1)
      }
      if (end === -1) break
      index = end
    } else if (byte === 0x2c) {
      if (++elements > maxElements) { exceeded = 'elements'; break }
    } else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > maxDepth) { exceeded = 'depth'; break }
      if (++elements > maxElements) { exceeded = 'elements'; break }
    } else if (byte === 0x5d || byte === 0x7d) {
      depth--
    }
  }
  if (exceeded === null) return null
  return exceeded === 'depth' ? `nested deeper than ${maxDepth} (at byte ${index})` : `more than ${maxElements} elements (at byte ${index})`
}

// 0 for bytes that do not matter, else which structural byte it is.
const BYTE_CLASS = new Uint8Array(256)
BYTE_CLASS[0x22] = 1
BYTE_CLASS[0x2c] = 2
BYTE_CLASS[0x5b] = 3
BYTE_CLASS[0x7b] = 3
BYTE_CLASS[0x5d] = 4
BYTE_CLASS[0x7d] = 4

/** The candidate that classifies each byte with one table lookup instead of a chain of comparisons. */
function exceedsWithTable (bytes: Uint8Array, budget: JsonBudget): string | null {
  const classes = BYTE_CLASS
  const maxDepth = Math.min(budget.maxDepth, 0x3fffffff) | 0
  const maxElements = Math.min(budget.maxElements, 0x3fffffff) | 0
  const length = bytes.length
  let depth = 0
  let elements = 0
  let exceeded: 'depth' | 'elements' | null = null
  let index = 0
  for (; index < length; index++) {
    const kind = classes[bytes[index]!]!
    if (kind === 0) continue
    if (kind === 1) {
      index++
      while (index < length) {
        const inner = bytes[index]!
        if (inner === QUOTE) break
        index += inner === BACKSLASH ? 2 : 1
      }
    } else if (kind === 2) {
      if (++elements > maxElements) { exceeded = 'elements'; break }
    } else if (kind === 3) {
      if (++depth > maxDepth) { exceeded = 'depth'; break }
      if (++elements > maxElements) { exceeded = 'elements'; break }
    } else {
      depth--
    }
  }
  if (exceeded === null) return null
  return exceeded === 'depth' ? `nested deeper than ${maxDepth} (at byte ${index})` : `more than ${maxElements} elements (at byte ${index})`
}

const CANDIDATES = {
  parse: (bytes: Uint8Array) => JSON.parse(decoder.decode(bytes)),
  loop: (bytes: Uint8Array, budget: JsonBudget) => exceedsJsonBudget(bytes, budget),
  hop: (bytes: Uint8Array, budget: JsonBudget) => exceedsWithHops(bytes, budget),
  table: (bytes: Uint8Array, budget: JsonBudget) => exceedsWithTable(bytes, budget)
} as const
type Candidate = keyof typeof CANDIDATES

/** Depth and containers-plus-commas of a parsed value: the oracle the byte scan must agree with. */
function shapeOf (value: unknown, depth = 1): { depth: number, elements: number } {
  if (typeof value !== 'object' || value === null) return { depth: 0, elements: 0 }
  const children = Array.isArray(value) ? value : Object.values(value)
  let deepest = depth
  let elements = 1 + Math.max(0, children.length - 1)
  for (const child of children) {
    const inner = shapeOf(child, depth + 1)
    deepest = Math.max(deepest, inner.depth)
    elements += inner.elements
  }
  return { depth: deepest, elements }
}

function hostileBodies (bytes = HOSTILE_BYTES): Record<string, Uint8Array> {
  const arrays = Math.floor((bytes - 1) / 3)
  const zeros = Math.floor((bytes - 1) / 2)
  const levels = Math.floor(bytes / 2)
  // A long string full of what must not count: brackets, commas and escaped quotes and backslashes.
  const decoy = 'a[b{c,d\\"e\\\\f'.repeat(Math.floor((bytes - 4) / 15))
  return {
    'wide [[],[],...]': encoder.encode(`[${'[],'.repeat(arrays - 1)}[]]`),
    'deep [[[...]]]': encoder.encode('['.repeat(levels) + ']'.repeat(levels)),
    'flat [0,0,...]': encoder.encode(`[${'0,'.repeat(zeros - 1)}0]`),
    'one huge string': encoder.encode(`["${decoy}"]`)
  }
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** Milliseconds per call of each candidate, median over alternating rounds. */
function timeCandidates (bytes: Uint8Array, budget: JsonBudget, candidates: Candidate[], rounds = ROUNDS): Record<string, number> {
  const samples: Record<string, number[]> = {}
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? candidates : [...candidates].reverse()
    for (const candidate of order) {
      const run = CANDIDATES[candidate]
      let calls = 0
      const start = performance.now()
      let elapsed = 0
      do {
        run(bytes, budget)
        calls++
        elapsed = performance.now() - start
      } while (elapsed < ROUND_TARGET_MS)
      ;(samples[candidate] ??= []).push(elapsed / calls)
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)]))
}

const milliseconds = (value: number | undefined) => value === undefined ? '-' : value < 0.1 ? value.toFixed(4) : value.toFixed(2)
const ratio = (part: number | undefined, whole: number | undefined) => part === undefined || !whole ? '-' : `${(100 * part / whole).toFixed(1)}%`

// Steady state, as in a long-running worker: every candidate has seen every kind of body and both outcomes.
for (let warm = 0; warm < 20; warm++) {
  const samples = [...Object.values(hostileBodies(64 * 1024)), ...[1, 10].map((scale) => encoder.encode(JSON.stringify(BODY_GENERATORS.recommendations!('u-1', scale))))]
  for (const sample of samples) {
    for (const budget of [UNLIMITED, DEFAULT_JSON_BUDGET, { maxDepth: 4, maxElements: 1000 }]) {
      for (const run of Object.values(CANDIDATES)) run(sample, budget)
    }
  }
}

console.log(`json-budget bench: node ${process.version}, ${ROUNDS} alternating rounds, medians, ms per call`)
console.log(`default budget ${JSON.stringify(DEFAULT_JSON_BUDGET)}\n`)
console.log('| body | scale | bytes | depth | elements | parse ms | loop ms | hop ms | table ms | loop/parse | hop/parse | table/parse |')
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|')
for (const scale of [1, 10]) {
  for (const name of UPSTREAM_NAMES) {
    const value = BODY_GENERATORS[name]!('u-42', scale)
    const bytes = encoder.encode(JSON.stringify(value))
    const shape = shapeOf(value)
    const rejected = exceedsJsonBudget(bytes, DEFAULT_JSON_BUDGET)
    if (rejected) throw new Error(`${name} at scale ${scale} exceeds the default budget: ${rejected}`)
    // Full scans on a normal body: the budget is never hit, so the unlimited budget times the same work.
    const times = timeCandidates(bytes, UNLIMITED, ['parse', 'loop', 'hop', 'table'])
    console.log(`| ${name} | ${scale} | ${bytes.length} | ${shape.depth} | ${shape.elements} | ${milliseconds(times.parse)} | ${milliseconds(times.loop)} | ${milliseconds(times.hop)} | ${milliseconds(times.table)} | ${ratio(times.loop, times.parse)} | ${ratio(times.hop, times.parse)} | ${ratio(times.table, times.parse)} |`)
  }
}

console.log('\nHostile bodies of 8 MiB: parse (3 rounds), a full scan with no budget, and the rejection with the default budget')
console.log('| body | parse ms | full loop ms | full hop ms | full table ms | reject loop ms | reject hop ms | reject table ms | reason |')
console.log('|---|---|---|---|---|---|---|---|---|')
for (const [name, bytes] of Object.entries(hostileBodies())) {
  const parse = timeCandidates(bytes, UNLIMITED, ['parse'], 3)
  const full = timeCandidates(bytes, UNLIMITED, ['loop', 'hop', 'table'], 3)
  const reject = timeCandidates(bytes, DEFAULT_JSON_BUDGET, ['loop', 'hop', 'table'])
  console.log(`| ${name} | ${milliseconds(parse.parse)} | ${milliseconds(full.loop)} | ${milliseconds(full.hop)} | ${milliseconds(full.table)} | ${milliseconds(reject.loop)} | ${milliseconds(reject.hop)} | ${milliseconds(reject.table)} | ${exceedsJsonBudget(bytes, DEFAULT_JSON_BUDGET) ?? 'accepted'} |`)
}
