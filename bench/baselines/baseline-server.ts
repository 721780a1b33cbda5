import { createServer } from 'node:http'
import { mergeSections } from '../lib/merge.js'
import { pathFor, registry, UPSTREAM_NAMES, upstreamVariable, type BuiltInUpstream as UpstreamName } from '../../src/lib/contract/upstreams.js'

export const declarationOf = (name: UpstreamName) => registry.upstreams.find((upstream) => upstream.name === name)!

// What a first version of the gateway might look like, for the benchmarks to compare against: node:http, the global
// fetch (undici Pools for the floor), no deadline, no timeouts, no bulkhead, no fallbacks, the merge inline on the
// event loop (bench/lib/merge.ts: the contract's schemas and section modules). Only how the five calls are made differs
// between the baselines.

export type FetchAll = (bodyOf: (name: UpstreamName) => Promise<Uint8Array>) => Promise<Record<UpstreamName, Uint8Array>>
/** The five calls at once with Promise.all: as fast as the slowest upstream, and exactly as slow. */
export const allAtOnce: FetchAll = async (bodyOf) => {
  const bodies = await Promise.all(UPSTREAM_NAMES.map((name) => bodyOf(name)))
  return Object.fromEntries(UPSTREAM_NAMES.map((name, index) => [name, bodies[index]])) as Record<UpstreamName, Uint8Array>
}

/** How one upstream's body is fetched: the global fetch by default; the floor passes an undici Pool. */
export type BodyOf = (name: UpstreamName, userId: string) => Promise<Uint8Array>

/** Where each upstream is, from the same variables the gateway reads. */
export const upstreamOrigin = (name: UpstreamName) => process.env[upstreamVariable(name, 'URL')] ?? `http://127.0.0.1:${declarationOf(name).defaults.port}`

async function fetchBody (name: UpstreamName, userId: string): Promise<Uint8Array> {
  const upstream = await fetch(`${upstreamOrigin(name)}${pathFor(declarationOf(name), userId)}`)
  if (!upstream.ok) throw new Error(`${name}: HTTP ${upstream.status}`)
  return new Uint8Array(await upstream.arrayBuffer())
}

const USER_PATH = /^\/aggregate\/([A-Za-z0-9_-]{1,64})$/

const BATCH_PATH = /^\/batch\?users=(\d{1,6})$/

/**
 * `batch`, when given, runs a batch of that many users for `POST /batch?users=<count>` and answers with what it
 * resolves to, once the batch is done.
 */
export function startBaseline (fetchAll: FetchAll, { bodyOf = fetchBody, onClose = async () => {}, batch }: { bodyOf?: BodyOf, onClose?: () => Promise<unknown>, batch?: (users: number) => Promise<unknown> } = {}): void {
  const server = createServer(async (request, response) => {
    if (request.url === '/health') {
      response.end('{"status":"ok"}')
      return
    }
    const batchMatch = request.method === 'POST' && batch ? BATCH_PATH.exec(request.url ?? '') : null
    if (batchMatch) {
      try {
        const done = await batch!(Number(batchMatch[1]))
        response.setHeader('content-type', 'application/json')
        response.end(JSON.stringify(done))
      } catch (error) {
        response.statusCode = 502
        response.end(JSON.stringify({ error: (error as Error).message }))
      }
      return
    }
    const match = USER_PATH.exec(request.url ?? '')
    if (!match) {
      response.statusCode = 404
      response.end()
      return
    }
    const userId = match[1]!
    try {
      const sections = mergeSections(userId, await fetchAll((name) => bodyOf(name, userId)))
      response.setHeader('content-type', 'application/json')
      response.end(JSON.stringify({ userId, ...sections }))
    } catch {
      response.statusCode = 502
      response.end('{"error":"upstream failed"}')
    }
  })
  server.keepAliveTimeout = 72_000
  server.listen(Number(process.env.PORT ?? 3101), '127.0.0.1')
  process.once('SIGTERM', () => {
    server.close()
    server.closeAllConnections()
    onClose().finally(() => process.exit(0))
  })
}
