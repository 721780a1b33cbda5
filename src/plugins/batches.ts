import fp from 'fastify-plugin'
import type { Batches } from '../lib/batch/batch-contract.js'
import { createBatchItemWorker } from '../lib/batch/batch-item-worker.js'
import { createBatches, runStagesHere } from '../lib/batch/batches.js'
import { createDistributedBatches } from '../lib/batch/distributed-batches.js'
import { createBatchThreadRunner } from '../workers/batch-thread-runner.js'
import type { MergeWorkerEntry } from '../workers/merge-pool.js'

declare module 'fastify' {
  interface FastifyInstance {
    batches: Batches
  }
}

/**
 * Batches of aggregates. In this process (cancelled, with their result files removed, on close): on a thread of their
 * own (BATCH_ON_THREAD, started once the gateway is ready) or on the aggregator's own stages. Or, with BATCH_REDIS_URL,
 * in Redis as BullMQ jobs shared by every gateway and batch-worker process, this gateway taking items too unless
 * BATCH_GATEWAY_TAKES_ITEMS=false (on close it finishes the items it holds and leaves the batches to the others).
 */
export default fp<{ mergeWorker?: MergeWorkerEntry }>(async function batches (fastify, { mergeWorker }) {
  const { batch } = fastify.config
  const { distributed } = batch
  if (!distributed) {
    const thread = batch.onThread ? createBatchThreadRunner(fastify.config, { mergeWorker, workCounters: fastify.mergePool.workCounters }) : undefined
    const batches = createBatches(thread?.runStages ?? runStagesHere(fastify.aggregator, batch), batch)
    fastify.decorate('batches', batches)
    // Once the gateway is up, so the thread's start does not delay it and the first batch does not wait for it.
    fastify.addHook('onReady', async () => {
      thread?.warmUp().catch((error: unknown) => fastify.log.error({ err: error }, 'the batch thread did not start; the next batch starts it again'))
    })
    fastify.addHook('preClose', async () => {
      await batches.close()
      await thread?.close()
    })
    return
  }
  const batches = createDistributedBatches({ ...batch, ...distributed, logger: fastify.log })
  const worker = distributed.gatewayTakesItems
    ? createBatchItemWorker({ ...batch, ...distributed, aggregator: fastify.aggregator, logger: fastify.log })
    : undefined
  fastify.decorate('batches', batches)
  fastify.addHook('preClose', async () => {
    await worker?.close()
    await batches.close()
  })
}, { name: 'batches', dependencies: ['aggregate'] })
