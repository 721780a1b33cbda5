import { afterAll, bench, describe } from 'vitest'
import { BODY_GENERATORS } from '../../mock-services/data.js'
import { registry, UPSTREAM_NAMES } from '../../src/lib/contract/upstreams.js'
import { parseJson, type MergeInput } from '../../src/lib/merge/merge-sections.js'
import { createMergePool } from '../../src/workers/merge-pool.js'
import { eventLoopClock } from '../helpers/bench-clocks.js'

// Where should the merge run? For each payload scale, what one request's merge costs the event loop:
//   JSON.parse only   the five bodies parsed on the loop: what the loop would pay just to parse them
//   inline            the merge pool's runHere: parse and merge on the loop
//   pool              the merge pool's run: the bytes handed (transferred) to its thread, the result taken back
// and, by the wall clock, one merge inline against one round trip through the pool. The pool is the gateway's
// (src/workers/merge-pool.ts) with one thread, set never to merge inline by itself. Event-loop time is the loop's
// active time (performance.eventLoopUtilization): the worker's own CPU does not count, nor the time the loop waits.
// `npm run bench:unit`, or `npx vitest bench --run test/workers/merge-placement.bench.ts`.

const SCALES = [0.05, 0.25, 1, 5, 10]
const CALLS = 100
const LOOP = { now: eventLoopClock, time: 0, iterations: CALLS, warmupTime: 0, warmupIterations: 5 }
const WALL = { time: 0, iterations: CALLS, warmupTime: 0, warmupIterations: 5 }

const pool = await createMergePool(registry, { threads: 1, maxQueue: 1, inlineMaxBytes: 0, inlineWhenAloneMaxBytes: 0, maxHeapMb: 512 })
afterAll(() => pool.close())
const stillWanted = new AbortController().signal
const encoder = new TextEncoder()

for (const scale of SCALES) {
  const userId = `placement-${scale}`
  const bodies = UPSTREAM_NAMES.map((name) => encoder.encode(JSON.stringify(BODY_GENERATORS[name]!(userId, scale))))
  const bodyBytes = bodies.reduce((sum, body) => sum + body.byteLength, 0)
  // A fresh copy of the bodies for every call, made before the clock starts: the pool detaches the buffers it is given.
  let prepared: MergeInput[] = []
  const prepare = () => {
    prepared = Array.from({ length: CALLS + 10 }, () => ({
      userId,
      topK: 10,
      sections: Object.fromEntries(UPSTREAM_NAMES.map((name, index) => [name, { fresh: bodies[index]!.slice(), otherwise: 'default' }])) as MergeInput['sections']
    }))
  }
  const next = () => {
    const input = prepared.pop()
    if (input === undefined) throw new Error('ran out of prepared inputs: raise the spare count')
    return input
  }
  const inline = () => { pool.runner.runHere(next()) }
  const inPool = async () => { await pool.runner.run(next(), { signal: stillWanted, budgetMs: 60_000, alone: false }) }

  describe(`payload scale ${scale}, ${bodyBytes.toLocaleString('en')} bytes of bodies: event-loop ms per merge`, () => {
    bench('JSON.parse of the five bodies', () => { for (const body of bodies) parseJson(body) }, LOOP)
    bench('inline: parse and merge on the loop', inline, { ...LOOP, setup: prepare })
    bench('pool: hand-off and result', inPool, { ...LOOP, setup: prepare })
  })
  describe(`payload scale ${scale}, ${bodyBytes.toLocaleString('en')} bytes of bodies: wall ms per merge`, () => {
    bench('inline', inline, { ...WALL, setup: prepare })
    bench('pool round trip', inPool, { ...WALL, setup: prepare })
  })
}
