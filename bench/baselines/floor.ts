import { Pool } from 'undici'
import { pathFor, UPSTREAM_NAMES, type BuiltInUpstream as UpstreamName } from '../../src/lib/contract/upstreams.js'
import { allAtOnce, declarationOf, startBaseline, upstreamOrigin, type BodyOf } from './baseline-server.js'
import { runFloorBatch } from './batch-floor.js'

// The floor: the least an aggregator can do and still do the gateway's work. node:http, one undici Pool per upstream
// (keep-alive, no connection limit), the five calls at once with Promise.all, the bodies parsed, checked against their
// payload schemas and merged inline by the section modules the registry names, as the gateway's merge threads do
// (bench/lib/merge.ts), and JSON.stringify of { userId, ...sections }. No deadline, no limits (not even the structural
// budget the gateway checks bodies against), no fallbacks, no logging, no metrics. Anything the gateway costs above this
// is the price of what it adds. It differs from the naive baseline only in its transport: undici instead of the global
// fetch. POST /batch?users=<count> runs the floor of a batch (batch-floor.ts) on the same transport.

const pools = Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, new Pool(upstreamOrigin(name))])) as Record<UpstreamName, Pool>

const bodyOf: BodyOf = async (name, userId) => {
  const { statusCode, body } = await pools[name].request({ method: 'GET', path: pathFor(declarationOf(name), userId) })
  const bytes = new Uint8Array(await body.arrayBuffer())
  if (statusCode !== 200) throw new Error(`${name}: HTTP ${statusCode}`)
  return bytes
}

startBaseline(allAtOnce, {
  bodyOf,
  batch: (users) => runFloorBatch(users, bodyOf),
  onClose: () => Promise.all(UPSTREAM_NAMES.map((name) => pools[name].destroy()))
})
