import underPressure, { type FastifyUnderPressureOptions } from '@fastify/under-pressure'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { OverloadedError } from '../lib/errors.js'
import { createShedController } from '../lib/shed-controller.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: the route answers even under pressure (liveness, readiness, observability). */
    shed?: boolean
  }
}

/**
 * Sheds load with 503 and Retry-After, in two layers. First a graduated one: a share of requests, steered so the
 * event loop's utilisation and delay stay near their targets (src/lib/shed-controller.ts). Behind it,
 * under-pressure's hard limits turn everything away while the process is over one: event-loop delay, event-loop
 * utilisation (per sample interval, not since boot: under-pressure#294), heap or RSS.
 */
export default fp(async function loadShedding (fastify) {
  const settings = fastify.config.loadShedding
  if (!settings.enabled) {
    fastify.decorate('isUnderPressure', () => false)
    return
  }
  if (settings.targetEventLoopDelayMs > 0 || settings.targetEventLoopUtilization > 0) {
    const controller = createShedController({
      targetDelayMs: settings.targetEventLoopDelayMs,
      targetUtilization: settings.targetEventLoopUtilization,
      intervalMs: 100
    })
    fastify.addHook('onRequest', async (request, reply) => {
      if (request.routeOptions.config.shed === false || !controller.shouldShed()) return
      fastify.telemetry.recordShed('eventLoopTarget')
      reply.code(503).header('retry-after', settings.retryAfterSeconds)
      throw new OverloadedError()
    })
    fastify.addHook('onClose', async () => { controller.stop() })
  }

  await fastify.register(underPressure, {
    maxEventLoopDelay: settings.maxEventLoopDelayMs,
    maxEventLoopUtilization: settings.maxEventLoopUtilization,
    eventLoopUtilizationMode: 'interval',
    maxHeapUsedBytes: settings.maxHeapUsedBytes,
    maxRssBytes: settings.maxRssBytes,
    sampleInterval: settings.sampleIntervalMs,
    exposeStatusRoute: false,
    // Counts each shed request by the limit it hit, then answers like every other 503. under-pressure sends whatever
    // the handler returns (README: "any other return value ... will be sent"); its types only say void.
    pressureHandler: ((_request: FastifyRequest, reply: FastifyReply, type: string) => {
      fastify.telemetry.recordShed(type)
      reply.code(503).header('retry-after', settings.retryAfterSeconds)
      return new OverloadedError()
    }) as unknown as FastifyUnderPressureOptions['pressureHandler']
  })
}, { name: 'load-shedding', dependencies: ['config', 'telemetry'] })

/** Route config for routes that must answer even under pressure (liveness, readiness): the checks let them through. */
export const neverShed = { shed: false, pressureHandler: () => undefined }
