import { createUpstreamClient, type UpstreamClient } from './clients/upstream-client.js'
import type { Config } from './config.js'
import { createAggregator, type Aggregator } from './lib/aggregate/aggregator.js'
import { channels, type CircuitMessage } from './lib/contract/events.js'
import { createStaleCache } from './lib/resilience/stale-cache.js'
import { createMergePool, type MergePool, type MergeWorkerEntry } from './workers/merge-pool.js'

/** What logs a circuit's change of state: the gateway's Fastify logger, or the batch worker's pino. */
interface CircuitLogger {
  warn (details: object, message: string): void
  info (details: object, message: string): void
}

export interface Aggregation {
  aggregator: Aggregator
  /** One client (call pipeline and connection pool) per declared upstream, in registry order. */
  clients: readonly UpstreamClient[]
  mergePool: MergePool
  /** Closes the clients after their last call, then the pool. */
  close (): Promise<void>
}

/**
 * Wires the aggregation together, for the gateway (src/plugins/aggregate.ts) and the batch worker alike: one client per
 * declared upstream fetches, the stale cache remembers, the merge pool merges. A circuit breaker's change of state is
 * logged once, here. `mergeWorker` is for tests (src/workers/merge-pool.ts).
 */
export async function createAggregation (config: Config, logger: CircuitLogger, mergeWorker?: MergeWorkerEntry): Promise<Aggregation> {
  const { registry, upstreams, upstreamTransport, aggregate, staleCache, mergePool: poolSettings } = config
  const mergePool = await createMergePool(registry, poolSettings, mergeWorker)
  const clients = Object.freeze(registry.upstreams.map((declaration) => createUpstreamClient(declaration, { ...upstreams[declaration.name]!, ...upstreamTransport })))
  const aggregator = createAggregator({
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
  })
  const logCircuit = (message: unknown) => {
    const { upstream, from, to, reason } = message as CircuitMessage
    logger[to === 'open' ? 'warn' : 'info']({ upstream, from, to, reason }, `${upstream} circuit ${to}`)
  }
  channels.circuit.subscribe(logCircuit)
  return {
    aggregator,
    clients,
    mergePool,
    async close () {
      channels.circuit.unsubscribe(logCircuit)
      await Promise.all(clients.map((client) => client.close()))
      await mergePool.close()
    }
  }
}
