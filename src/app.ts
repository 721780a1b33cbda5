import type { FastifyPluginAsync } from 'fastify'
import type { Config } from './config.js'
import aggregate from './plugins/aggregate.js'
import batches from './plugins/batches.js'
import http from './plugins/http.js'
import overload from './plugins/overload.js'
import telemetry from './plugins/telemetry.js'
import aggregateRoutes from './routes/aggregate.js'
import batchRoutes from './routes/batches.js'
import healthRoutes from './routes/health.js'
import type { MergeWorkerEntry } from './workers/merge-pool.js'

/**
 * The gateway as a plugin: the HTTP surface, overload protection, the aggregation and its batches, then telemetry
 * (which only reads the others), then the routes. It never listens; `server.ts` (or a test) decides where it runs. Tests
 * pass the merge threads a compiled worker (`mergeWorker`); otherwise they run the one beside the pool.
 */
const app: FastifyPluginAsync<{ config: Config, mergeWorker?: MergeWorkerEntry }> = async (fastify, { config, mergeWorker }) => {
  await fastify.register(http, { config })
  await fastify.register(overload)
  await fastify.register(aggregate, { mergeWorker })
  await fastify.register(batches, { mergeWorker })
  await fastify.register(telemetry)
  await fastify.register(healthRoutes)
  await fastify.register(aggregateRoutes)
  await fastify.register(batchRoutes)
}

export default app
