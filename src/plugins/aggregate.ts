import fp from 'fastify-plugin'
import { createUpstreamClient, type UpstreamClient } from '../clients/upstream-client.js'
import { createAggregator, type Aggregator } from '../lib/aggregate/aggregator.js'
import { channels, type CircuitMessage } from '../lib/contract/events.js'
import { createStaleCache } from '../lib/resilience/stale-cache.js'
import { createMergePool, type MergePool, type MergeWorkerEntry } from '../workers/merge-pool.js'

declare module 'fastify' {
  interface FastifyInstance {
    aggregator: Aggregator
    /** One client (call pipeline and connection pool) per declared upstream, in registry order. */
    upstreamClients: readonly UpstreamClient[]
    mergePool: MergePool
  }
}

/**
 * Wires the aggregation together: one client per declared upstream fetches, the stale cache remembers, the merge pool
 * merges. A circuit breaker's change of state is logged once, here. Clients close after the last in-flight request,
 * the pool after them.
 */
export default fp<{ mergeWorker?: MergeWorkerEntry }>(async function aggregate (fastify, { mergeWorker }) {
  const { registry, upstreams, upstreamTransport, aggregate, staleCache, mergePool: poolSettings } = fastify.config
  const mergePool = await createMergePool(registry, poolSettings, mergeWorker)
  const clients = registry.upstreams.map((declaration) => createUpstreamClient(declaration, { ...upstreams[declaration.name]!, ...upstreamTransport }))
  fastify.decorate('mergePool', mergePool)
  fastify.decorate('upstreamClients', Object.freeze(clients))
  fastify.decorate('aggregator', createAggregator({
    upstreams: registry.upstreams.map((declaration, index) => ({
      declaration,
      fallback: upstreams[declaration.name]!.fallback,
      maxBodyElements: upstreams[declaration.name]!.maxBodyElements,
      fetcher: clients[index]!
    })),
    staleCache: createStaleCache(staleCache),
    merge: mergePool.runner,
    deadlineMs: aggregate.deadlineMs,
    mergeReserveMs: aggregate.mergeReserveMs,
    topK: aggregate.topK
  }))
  const logCircuit = (message: unknown) => {
    const { upstream, from, to, reason } = message as CircuitMessage
    fastify.log[to === 'open' ? 'warn' : 'info']({ upstream, from, to, reason }, `${upstream} circuit ${to}`)
  }
  channels.circuit.subscribe(logCircuit)
  fastify.addHook('onClose', async () => {
    channels.circuit.unsubscribe(logCircuit)
    await Promise.all(clients.map((client) => client.close()))
    await mergePool.close()
  })
}, { name: 'aggregate', dependencies: ['http'] })
