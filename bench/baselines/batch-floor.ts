import { createWriteStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import pLimit from 'p-limit'
import { Piscina } from 'piscina'
import { UPSTREAM_NAMES, type BuiltInUpstream as UpstreamName } from '../../src/lib/contract/upstreams.js'
import type { BodyOf } from './baseline-server.js'

// The floor of a batch: the least a two-stage pipeline can do and still do the gateway's batch work. p-limit holds 50
// users' calls in flight (the five calls of each at once, as the floor aggregator makes them), each user's bodies go
// to a piscina pool of one thread per core as soon as they are in (nothing bounds that queue), and each merged line is
// appended to a file (removed after the batch). No ramp-up, deadline, timeout, retry, circuit, lane, priority or result endpoint.

const IO_CONCURRENCY = 50

// Started by the first batch: the floor aggregator serves other scenarios without these threads.
let pool: Piscina<{ userId: string, bodies: Record<string, Uint8Array> }, string> | undefined

/** Runs the batch for `users` users named `floor-user-<index>`; resolves with its wall time once every line is written. */
export async function runFloorBatch (users: number, bodyOf: BodyOf): Promise<{ users: number, wallSeconds: number }> {
  pool ??= new Piscina({
    filename: new URL('./batch-floor-merge.js', import.meta.url).href,
    minThreads: availableParallelism(),
    maxThreads: availableParallelism(),
    idleTimeout: Number.POSITIVE_INFINITY
  })
  const merge = pool
  const file = join(tmpdir(), `batch-floor-${process.pid}.ndjson`)
  const out = createWriteStream(file)
  const limit = pLimit(IO_CONCURRENCY)
  const merges: Array<Promise<void>> = []
  const startedAt = performance.now()
  try {
    await Promise.all(Array.from({ length: users }, (_, index) => limit(async () => {
      const userId = `floor-user-${index}`
      const fetched = await Promise.all(UPSTREAM_NAMES.map((name) => bodyOf(name, userId)))
      const bodies = Object.fromEntries(UPSTREAM_NAMES.map((name, at) => [name, fetched[at]!])) as Record<UpstreamName, Uint8Array>
      // Stage 2 off the I/O slot: the slot takes the next user while this one merges.
      const merged = merge.run({ userId, bodies }, { transferList: fetched.map((body) => body.buffer as ArrayBuffer) }).then((line) => { out.write(`${line}\n`) })
      // Awaited below with the others; a failure before then is not an unhandled rejection.
      merged.catch(() => {})
      merges.push(merged)
    })))
    await Promise.all(merges)
    await new Promise((resolve) => out.end(resolve))
    return { users, wallSeconds: (performance.now() - startedAt) / 1000 }
  } finally {
    out.destroy()
    await rm(file, { force: true })
  }
}
