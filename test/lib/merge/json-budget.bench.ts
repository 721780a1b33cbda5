import { bench, describe } from 'vitest'
import { BODY_GENERATORS } from '../../../mock-services/data.js'
import { registry } from '../../../src/lib/contract/upstreams.js'
import { exceedsJsonBudget, MAX_JSON_DEPTH, type JsonBudget } from '../../../src/lib/merge/json-budget.js'
import { cpuClock } from '../../helpers/bench-clocks.js'

// What the structural budget costs next to the parse it guards, and how fast it refuses a hostile body:
//   every upstream's normal body at payload scales 1 and 10 (within its budget: the scan reads every byte), and
//   8 MiB hostile bodies, parsed, and refused by the widest budget the gateway uses (recommendations').
// `npm run bench:unit`, or `npx vitest bench --run test/lib/merge/json-budget.bench.ts`.

const HOSTILE_BYTES = 8 * 1024 * 1024 - 1024
const OPTIONS = { now: cpuClock, time: 500, warmupTime: 200 }
// Parsing an 8 MiB hostile body takes about a second: a few calls are enough.
const SLOW_OPTIONS = { now: cpuClock, time: 0, iterations: 3, warmupTime: 0, warmupIterations: 1 }

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })
const parse = (bytes: Uint8Array): unknown => JSON.parse(decoder.decode(bytes))
const budgetOf = (maxElements: number): JsonBudget => ({ maxDepth: MAX_JSON_DEPTH, maxElements })
const widest = budgetOf(Math.max(...registry.upstreams.map((upstream) => upstream.defaults.maxBodyElements)))

function hostileBodies (bytes = HOSTILE_BYTES): Record<string, Uint8Array> {
  const arrays = Math.floor((bytes - 1) / 3)
  const zeros = Math.floor((bytes - 1) / 2)
  const levels = Math.floor(bytes / 2)
  // A long string full of what must not count: brackets, commas and escaped quotes and backslashes.
  const decoy = 'a[b{c,d\\"e\\\\f'.repeat(Math.floor((bytes - 4) / 15))
  return {
    'wide [[],[],…]': encoder.encode(`[${'[],'.repeat(arrays - 1)}[]]`),
    'deep [[[…]]]': encoder.encode('['.repeat(levels) + ']'.repeat(levels)),
    'flat [0,0,…]': encoder.encode(`[${'0,'.repeat(zeros - 1)}0]`),
    'one huge string': encoder.encode(`["${decoy}"]`)
  }
}

for (const scale of [1, 10]) {
  for (const { name, defaults } of registry.upstreams) {
    const bytes = encoder.encode(JSON.stringify(BODY_GENERATORS[name]!(`bench-user-${scale}`, scale)))
    const budget = budgetOf(defaults.maxBodyElements)
    const refused = exceedsJsonBudget(bytes, budget)
    if (refused !== null) throw new Error(`a normal ${name} body at scale ${scale} exceeds its budget: ${refused}`)
    // Small bodies are timed in batches of about 200 kB, so reading the clock costs little next to what it times.
    const batch = Math.ceil(200_000 / bytes.byteLength)
    describe(`${name}, payload scale ${scale}, ${bytes.byteLength.toLocaleString('en')} bytes: CPU ms per ${batch === 1 ? 'body' : `${batch} bodies`}`, () => {
      bench('JSON.parse (decode and parse)', () => { for (let call = 0; call < batch; call++) parse(bytes) }, OPTIONS)
      bench('structural budget scan (exceedsJsonBudget)', () => { for (let call = 0; call < batch; call++) exceedsJsonBudget(bytes, budget) }, OPTIONS)
    })
  }
}

for (const [kind, bytes] of Object.entries(hostileBodies())) {
  const refused = exceedsJsonBudget(bytes, widest)
  describe(`hostile 8 MiB body, ${kind} (${refused === null ? 'accepted' : refused}): CPU ms per body`, () => {
    bench('JSON.parse (decode and parse)', () => { parse(bytes) }, SLOW_OPTIONS)
    bench('structural budget check, widest budget', () => { exceedsJsonBudget(bytes, widest) }, OPTIONS)
  })
}
