import underPressure from '@fastify/under-pressure'
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
    retryAfter: settings.retryAfterSeconds,
    customError: OverloadedError,
    exposeStatusRoute: false
  })
}, { name: 'load-shedding', dependencies: ['config'] })

/** Route config for routes that must answer even under pressure (liveness, readiness): the check lets them through. */
export const neverShed = { pressureHandler: () => undefined }
