import Fastify, { LogController } from 'fastify'
import fp from 'fastify-plugin'
import observabilityRoutes from '../routes/observability.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Origin of the separate observability server, once it listens. */
    observabilityOrigin: string | null
  }
}

/**
 * Serves /metrics and /dashboard on their own port (OBSERVABILITY_PORT), so they need not be public where the
 * aggregate route is. It starts when the gateway is ready, fails the start if its port is taken, and closes with it.
 */
export default fp(async function observabilityServer (fastify) {
  const { observability, loadShedding } = fastify.config
  const server = Fastify({
    loggerInstance: fastify.log.child({ server: 'observability' }),
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: 'idle'
  })
  await server.register(observabilityRoutes, {
    telemetry: fastify.telemetry,
    metrics: observability.metricsEnabled,
    dashboard: observability.dashboardEnabled,
    maxDashboardClients: observability.maxDashboardClients,
    streamMaxSeconds: observability.dashboardStreamMaxSeconds,
    retryAfterSeconds: loadShedding.retryAfterSeconds
  })
  server.setNotFoundHandler((request, reply) => reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `Route ${request.method} ${request.url.slice(0, 200)} not found` }))

  fastify.decorate('observabilityOrigin', null)
  fastify.addHook('onReady', async () => {
    fastify.observabilityOrigin = await server.listen({ host: observability.host, port: observability.port ?? 0 })
  })
  fastify.addHook('preClose', async () => { await server.close() })
}, { name: 'observability-server', dependencies: ['config', 'telemetry'] })
