import { UPSTREAM_NAMES, type UpstreamName } from '../../src/lib/contract/upstreams.js'
import { startBaseline } from './baseline-server.js'

// Serial: awaits each upstream in turn, so a response takes the sum of the five latencies.
startBaseline(async (bodyOf) => {
  const bodies = {} as Record<UpstreamName, Uint8Array>
  for (const name of UPSTREAM_NAMES) bodies[name] = await bodyOf(name)
  return bodies
})
