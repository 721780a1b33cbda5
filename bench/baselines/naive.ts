import { UPSTREAM_NAMES, type UpstreamName } from '../../src/lib/upstreams.js'
import { startBaseline } from './baseline-server.js'

// Naive concurrent: Promise.all over the five calls. As fast as the slowest upstream, and exactly as slow: no deadline,
// no timeout, no limit on calls in flight.
startBaseline(async (bodyOf) => {
  const bodies = await Promise.all(UPSTREAM_NAMES.map((name) => bodyOf(name)))
  return Object.fromEntries(UPSTREAM_NAMES.map((name, index) => [name, bodies[index]])) as Record<UpstreamName, Uint8Array>
})
