import type { FastifyPluginAsync } from 'fastify'
import type { Config } from './config.js'
import aggregatorPlugin from './plugins/aggregator.js'
import configPlugin from './plugins/config.js'
import errorHandler from './plugins/error-handler.js'
import gracefulClose from './plugins/graceful-close.js'
import loadShedding from './plugins/load-shedding.js'
import mergePool from './plugins/merge-pool.js'
import requestTracing from './plugins/request-tracing.js'
import upstreamClients from './plugins/upstream-clients.js'
import aggregateRoutes from './routes/aggregate.js'
import healthRoutes from './routes/health.js'

/**
 * The gateway as a plugin: shared services first, in dependency order, then the routes. It never listens; `server.ts`
 * (or a test) decides where it runs.
 */
const app: FastifyPluginAsync<{ config: Config }> = async (fastify, { config }) => {
  await fastify.register(configPlugin, { config })
  await fastify.register(requestTracing)
  await fastify.register(errorHandler)
  await fastify.register(gracefulClose)
  await fastify.register(loadShedding)
  await fastify.register(mergePool)
  await fastify.register(upstreamClients)
  await fastify.register(aggregatorPlugin)
  await fastify.register(healthRoutes)
  await fastify.register(aggregateRoutes)
}

export default app
