import type { FastifyPluginAsync } from 'fastify'
import { neverShed } from '../lib/overload/never-shed.js'

const HealthSchema = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string' }, reasons: { type: 'array', items: { type: 'string' } } }
} as const

/**
 * Liveness (`/health`: the process answers) and readiness (`/ready`: not under pressure and the merge pool is up).
 * Both skip load shedding and do no I/O, so they answer fast while aggregation is busy.
 */
const healthRoutes: FastifyPluginAsync = async (fastify) => {
  const { retryAfterSeconds } = fastify.config.loadShedding

  fastify.get('/health', { config: neverShed, schema: { response: { 200: HealthSchema } } }, async () => ({ status: 'ok' }))

  fastify.get('/ready', { config: neverShed, schema: { response: { 200: HealthSchema, 503: HealthSchema } } }, async (_request, reply) => {
    const reasons: string[] = []
    if (fastify.isUnderPressure()) reasons.push('under-pressure')
    if (!fastify.mergePool.isReady()) reasons.push('merge-pool-unavailable')
    if (reasons.length === 0) return { status: 'ready' }
    return reply.code(503).header('retry-after', retryAfterSeconds).send({ status: 'not-ready', reasons })
  })
}

export default healthRoutes
