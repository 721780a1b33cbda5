import underPressure, { type FastifyUnderPressureOptions } from '@fastify/under-pressure'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { OverloadedError } from '../lib/errors.js'

/**
 * Sheds load with 503 and Retry-After while the process is over a limit: event-loop delay, event-loop utilisation
 * (per sample interval, not since boot: under-pressure#294), heap or RSS.
 */
export default fp(async function loadShedding (fastify) {
  const settings = fastify.config.loadShedding
  if (!settings.enabled) {
    fastify.decorate('isUnderPressure', () => false)
    return
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

/** Route config for routes that must answer even under pressure (liveness, readiness): the check lets them through. */
export const neverShed = { pressureHandler: () => undefined }
