import { createServer } from 'node:http'
import { Pool } from 'undici'
import { mergeSections, type MergeInput } from '../../src/lib/merge/merge-sections.js'
import { UPSTREAM_NAMES, UPSTREAMS, upstreamVariable, type UpstreamName } from '../../src/lib/upstreams.js'

// The floor: the least an aggregator can do and still do the gateway's work. node:http, one undici Pool per upstream
// (keep-alive, no connection limit), the five calls at once with Promise.all, the bodies parsed and merged inline by the
// same mergeSections the gateway's workers run, and JSON.stringify of { userId, ...sections }. No deadline, no limits,
// no fallbacks beyond the merge's own defaults, no logging, no metrics. Anything the gateway costs above this is the
// price of what it adds.

const USER_PATH = /^\/aggregate\/([A-Za-z0-9_-]{1,64})$/
const TOP_K = 10

const pools = Object.fromEntries(UPSTREAM_NAMES.map((name) => {
  const origin = process.env[upstreamVariable(name, 'URL')] ?? `http://127.0.0.1:${UPSTREAMS[name].defaultPort}`
  return [name, new Pool(origin)]
})) as Record<UpstreamName, Pool>

async function bodyOf (name: UpstreamName, userId: string): Promise<Uint8Array> {
  const { statusCode, body } = await pools[name].request({ method: 'GET', path: UPSTREAMS[name].pathFor(userId) })
  const bytes = new Uint8Array(await body.arrayBuffer())
  if (statusCode !== 200) throw new Error(`${name}: HTTP ${statusCode}`)
  return bytes
}

const server = createServer((request, response) => {
  if (request.url === '/health') {
    response.end('{"status":"ok"}')
    return
  }
  const match = USER_PATH.exec(request.url ?? '')
  if (!match) {
    response.statusCode = 404
    response.end()
    return
  }
  const userId = match[1]!
  Promise.all(UPSTREAM_NAMES.map((name) => bodyOf(name, userId))).then((bodies) => {
    const input: MergeInput = {
      userId,
      topK: TOP_K,
      sections: Object.fromEntries(UPSTREAM_NAMES.map((name, index) => [name, { fresh: bodies[index], otherwise: 'default' }])) as MergeInput['sections']
    }
    const { sections } = mergeSections(input)
    response.setHeader('content-type', 'application/json')
    response.end(JSON.stringify({ userId, ...sections }))
  }, () => {
    response.statusCode = 502
    response.end('{"error":"upstream failed"}')
  })
})
server.keepAliveTimeout = 72_000
server.listen(Number(process.env.PORT ?? 3101), '127.0.0.1')
process.once('SIGTERM', () => {
  server.close()
  server.closeAllConnections()
  Promise.all(UPSTREAM_NAMES.map((name) => pools[name].destroy())).finally(() => process.exit(0))
})
