import fp from 'fastify-plugin'
import { createAggregator, type Aggregator } from '../lib/aggregate/aggregator.js'
import { createStaleCache } from '../lib/resilience/stale-cache.js'
import { UPSTREAM_NAMES, type UpstreamName } from '../lib/contract/upstreams.js'
import type { FallbackPolicy } from '../lib/aggregate/fallback-policy.js'

declare module 'fastify' {
  interface FastifyInstance {
    aggregator: Aggregator
  }
}

/** Wires the aggregation together: the upstream clients fetch, the stale cache remembers, the merge pool merges. */
export default fp(async function aggregator (fastify) {
  const { aggregate, staleCache, upstreams } = fastify.config
  fastify.decorate('aggregator', createAggregator({
    fetchers: fastify.upstreamClients,
    fallbacks: Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, upstreams[name].fallback])) as Record<UpstreamName, FallbackPolicy>,
    staleCache: createStaleCache(staleCache),
    merge: fastify.mergePool.run,
    deadlineMs: aggregate.deadlineMs,
    mergeReserveMs: aggregate.mergeReserveMs,
    topK: aggregate.topK,
    maxBodyElements: Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, upstreams[name].maxBodyElements])) as Record<UpstreamName, number>
  }))
}, { name: 'aggregator', dependencies: ['config', 'upstream-clients', 'merge-pool'] })
