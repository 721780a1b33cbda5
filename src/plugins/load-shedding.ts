import underPressure, { type FastifyUnderPressureOptions } from '@fastify/under-pressure'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { OverloadedError } from '../errors.js'

/**
 * The backstop behind admission (src/plugins/admission.ts): while the process is over a hard limit — event-loop delay,
 * event-loop utilisation (per sample interval, not since boot: under-pressure#294), heap or RSS — every request but
 * the health routes gets 503 with Retry-After. Admission keeps the process off these limits; this catches what it
 * cannot see, such as memory.
 */
export default fp(async function loadShedding (fastify) {
  const settings = fastify.config.loadShedding
  if (!settings.enabled) {
    fastify.decorate('isUnderPressure', () => false)
    return
  }
  // The 503 is OverloadedError's own status, and the central error handler adds Retry-After to every 503.
  const turnAway = (reason: string) => {
    fastify.telemetry.recordShed(reason)
    return new OverloadedError()
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
export const neverShed = { pressureHandler: () => undefined }
