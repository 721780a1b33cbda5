import fp from 'fastify-plugin'
import { createAggregation } from '../aggregation.js'
import type { UpstreamClient } from '../clients/upstream-client.js'
import type { Aggregator } from '../lib/aggregate/aggregator.js'
import type { MergePool, MergeWorkerEntry } from '../workers/merge-pool.js'

declare module 'fastify' {
  interface FastifyInstance {
    aggregator: Aggregator
    /** One client (call pipeline and connection pool) per declared upstream, in registry order. */
    upstreamClients: readonly UpstreamClient[]
    mergePool: MergePool
  }
}

/**
 * The aggregation (src/aggregation.ts) as decorators: the aggregator, its upstream clients and the merge pool. Clients
 * close after the last in-flight request, the pool after them.
 */
export default fp<{ mergeWorker?: MergeWorkerEntry }>(async function aggregate (fastify, { mergeWorker }) {
  const aggregation = await createAggregation(fastify.config, fastify.log, { mergeWorker })
  fastify.decorate('mergePool', aggregation.mergePool)
  fastify.decorate('upstreamClients', aggregation.clients)
  fastify.decorate('aggregator', aggregation.aggregator)
  fastify.addHook('onClose', async () => { await aggregation.close() })
}, { name: 'aggregate', dependencies: ['http'] })
