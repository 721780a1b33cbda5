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
  // Counts a shed request by what shed it. The 503 is OverloadedError's own status, and the central error handler adds
  // Retry-After to every 503, so both layers answer exactly like any other overload.
  const turnAway = (reason: string) => {
    fastify.telemetry.recordShed(reason)
    return new OverloadedError()
  }

  if (settings.targetEventLoopDelayMs > 0 || settings.targetEventLoopUtilization > 0) {
    const controller = createShedController({
      targetDelayMs: settings.targetEventLoopDelayMs,
      targetUtilization: settings.targetEventLoopUtilization,
      intervalMs: 100
    })
    fastify.addHook('onRequest', async (request) => {
      if (request.routeOptions.config.shed !== false && controller.shouldShed()) throw turnAway('eventLoopTarget')
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
    // under-pressure sends whatever the handler returns (README: "any other return value ... will be sent"); its types
    // only say void.
    pressureHandler: ((_request: FastifyRequest, _reply: FastifyReply, type: string) => turnAway(type)) as unknown as FastifyUnderPressureOptions['pressureHandler']
  })
}, { name: 'load-shedding', dependencies: ['config', 'telemetry'] })

/** Route config for routes that must answer even under pressure (liveness, readiness): the checks let them through. */
export const neverShed = { shed: false, pressureHandler: () => undefined }
