import Fastify, { LogController, type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createTelemetry, type Telemetry } from '../lib/telemetry/telemetry.js'
import observabilityRoutes from '../routes/observability.js'

declare module 'fastify' {
  interface FastifyInstance {
    telemetry: Telemetry
    /** Origin of the separate observability server, once it listens; null when there is none. */
    observabilityOrigin: string | null
  }
}

/**
 * Telemetry, wired: it is handed the state of admission, the event loop, the clients and the merge pool to pull, times
 * every HTTP request, and serves /metrics and /dashboard — on their own port (OBSERVABILITY_PORT, the default: they
 * need not be public where the aggregate route is) or on the gateway's. Registered last: it reads, nobody calls it.
 */
export default fp(async function telemetry (fastify) {
  const { observability, loadShedding } = fastify.config
  const clients = fastify.upstreamClients
  const telemetry = createTelemetry(clients.map((client) => client.name), {
    upstreams: () => Object.fromEntries(clients.map((client) => [client.name, client.stats()])),
    mergePool: () => fastify.mergePool.stats(),
    admission: () => fastify.admission.stats(),
    batches: () => fastify.batches.recent(),
    eventLoop: fastify.eventLoop
  })
  fastify.decorate('telemetry', telemetry)
  fastify.addHook('onResponse', async (request, reply) => {
    telemetry.recordHttp(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000)
  })
  fastify.addHook('onClose', async () => { telemetry.stop() })

  const routes = {
    telemetry,
    metrics: observability.metricsEnabled,
    dashboard: observability.dashboardEnabled,
    maxDashboardClients: observability.maxDashboardClients,
    streamMaxSeconds: observability.dashboardStreamMaxSeconds,
    retryAfterSeconds: loadShedding.retryAfterSeconds
  }
  fastify.decorate('observabilityOrigin', null)
  if (observability.port === undefined) {
    if (observability.metricsEnabled || observability.dashboardEnabled) await fastify.register(observabilityRoutes, routes)
    return
  }
  const server: FastifyInstance = Fastify({
    loggerInstance: fastify.log.child({ server: 'observability' }),
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: 'idle'
  })
  await server.register(observabilityRoutes, routes)
  server.setNotFoundHandler((request, reply) => reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `Route ${request.method} ${request.url.slice(0, 200)} not found` }))
  // It starts when the gateway is ready, fails the start if its port is taken, and closes with it.
  fastify.addHook('onReady', async () => {
    fastify.observabilityOrigin = await server.listen({ host: observability.host, port: observability.port ?? 0 })
  })
  fastify.addHook('preClose', async () => { await server.close() })
}, { name: 'telemetry', dependencies: ['http', 'overload', 'aggregate', 'batches'] })
