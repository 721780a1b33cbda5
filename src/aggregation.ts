import { createUpstreamClient, type UpstreamClient } from './clients/upstream-client.js'
import type { Config } from './config.js'
import { createAggregator, type Aggregator } from './lib/aggregate/aggregator.js'
import { channels, type CircuitMessage } from './lib/contract/events.js'
import { MERGE_WORK_COUNTERS } from './lib/merge/merge-sections.js'
import { createStaleCache } from './lib/resilience/stale-cache.js'
import { createMergePool, type MergePool, type MergeWorkerEntry } from './workers/merge-pool.js'
import { sharedCounters } from './workers/shared-counters.js'

/** What logs a circuit's change of state: the gateway's Fastify logger, or the batch worker's pino. */
interface CircuitLogger {
  warn (details: object, message: string): void
  info (details: object, message: string): void
}

export interface Aggregation {
  aggregator: Aggregator
  /** One client (call pipeline and connection pool) per declared upstream, in registry order. */
  clients: readonly UpstreamClient[]
  /** Interactive merges (`aggregate`): the threads of MERGE_POOL_THREADS, at the process's priority. */
  mergePool: MergePool
  /** Closes the clients after their last call, then the pools. */
  close (): Promise<void>
}

/**
 * Wires the aggregation together, for the gateway (src/plugins/aggregate.ts) and the batch worker alike: one client per
 * declared upstream fetches, the stale cache remembers, the merge pools merge. Batches merge on a pool of their own,
 * whose threads the OS runs only when the event loop and the interactive merges leave it a core: a batch takes the CPU
 * interactive traffic does not use, never a thread it needs. A batch worker or the batch thread (`interactive: false`)
 * has only that pool; a gateway that takes no batch items (BATCH_GATEWAY_TAKES_ITEMS=false, or BATCH_ON_THREAD) only
 * the interactive one. The pools of one thread count their work in one set of counters. A circuit breaker's change of
 * state is logged once, here. `workCounters` are another thread's (the batch thread adds to the gateway's);
 * `mergeWorker` is for tests (src/workers/merge-pool.ts).
 */
export async function createAggregation (config: Config, logger: CircuitLogger, { mergeWorker, interactive = true, workCounters: sharedWork }: { mergeWorker?: MergeWorkerEntry, interactive?: boolean, workCounters?: SharedArrayBuffer } = {}): Promise<Aggregation> {
  const { registry, upstreams, upstreamTransport, aggregate, staleCache, mergePool: poolSettings, batch } = config
  // A gateway merges batch items itself unless they run on its batch thread or on other processes.
  const mergesBatchItems = !interactive || (batch.distributed ? batch.distributed.gatewayTakesItems : !batch.onThread)
  const workCounters = sharedCounters(MERGE_WORK_COUNTERS, sharedWork).buffer
  const [interactivePool, batchPool] = await Promise.all([
    interactive ? createMergePool(registry, { ...poolSettings, workCounters }, mergeWorker) : undefined,
    mergesBatchItems ? createMergePool(registry, { ...poolSettings, threads: batch.cpuConcurrency, niceness: batch.cpuNiceness, workCounters }, mergeWorker) : undefined
  ])
  // At least one of the two: a process that is not interactive merges batch items.
  const mergePool = (interactivePool ?? batchPool)!
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
    batchMerge: batchPool?.runner,
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
      await Promise.all([interactivePool?.close(), batchPool?.close()])
    }
  }
}
