import type { FastifyPluginAsync } from 'fastify'
import type { Config } from './config.js'
import admission from './plugins/admission.js'
import aggregatorPlugin from './plugins/aggregator.js'
import configPlugin from './plugins/config.js'
import errorHandler from './plugins/error-handler.js'
import gracefulClose from './plugins/graceful-close.js'
import loadShedding from './plugins/load-shedding.js'
import mergePool from './plugins/merge-pool.js'
import observabilityServer from './plugins/observability-server.js'
import requestTracing from './plugins/request-tracing.js'
import telemetry from './plugins/telemetry.js'
import upstreamClients from './plugins/upstream-clients.js'
import aggregateRoutes from './routes/aggregate.js'
import healthRoutes from './routes/health.js'
import observabilityRoutes from './routes/observability.js'

/**
 * The gateway as a plugin: shared services first, in dependency order, then the routes. It never listens; `server.ts`
 * (or a test) decides where it runs.
 */
const app: FastifyPluginAsync<{ config: Config }> = async (fastify, { config }) => {
  await fastify.register(configPlugin, { config })
  await fastify.register(requestTracing)
  await fastify.register(errorHandler)
  await fastify.register(gracefulClose)
  await fastify.register(telemetry)
  await fastify.register(admission)
  await fastify.register(loadShedding)
  await fastify.register(mergePool)
  await fastify.register(upstreamClients)
  await fastify.register(aggregatorPlugin)
  await fastify.register(healthRoutes)
  await fastify.register(aggregateRoutes)

  const { observability } = config
  if (observability.port !== undefined) {
    await fastify.register(observabilityServer)
  } else if (observability.metricsEnabled || observability.dashboardEnabled) {
    await fastify.register(observabilityRoutes, {
      telemetry: fastify.telemetry,
      metrics: observability.metricsEnabled,
      dashboard: observability.dashboardEnabled,
      maxDashboardClients: observability.maxDashboardClients,
      streamMaxSeconds: observability.dashboardStreamMaxSeconds,
      retryAfterSeconds: config.loadShedding.retryAfterSeconds
    })
  }
}

export default app
