import fp from 'fastify-plugin'
import type { Batches } from '../lib/batch/batch-contract.js'
import { createBatches } from '../lib/batch/batches.js'

declare module 'fastify' {
  interface FastifyInstance {
    batches: Batches
  }
}

/** Batches of aggregates on the aggregator's own stages; cancelled, with their result files removed, on close. */
export default fp(async function batches (fastify) {
  const batches = createBatches(fastify.aggregator, fastify.config.batch)
  fastify.decorate('batches', batches)
  fastify.addHook('preClose', async () => { await batches.close() })
}, { name: 'batches', dependencies: ['aggregate'] })
