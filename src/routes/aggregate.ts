import type { FastifyPluginAsync } from 'fastify'
import { AggregateBodySchema, AggregateParamsSchema, AggregateQuerystringSchema } from '../lib/contract/response.js'

// Behind the deadline, a last bound on the whole handler: a merge already running is allowed this long to finish.
const HANDLER_GRACE_MS = 1000

/** GET /aggregate/:userId: one user's profile, orders, recommendations, inventory and loyalty, merged. */
const aggregateRoutes: FastifyPluginAsync = async (fastify) => {
  fastify.get<{ Params: { userId: string } }>('/aggregate/:userId', {
    schema: {
      params: AggregateParamsSchema,
      querystring: AggregateQuerystringSchema,
      response: { 200: AggregateBodySchema, '4xx': { $ref: 'ErrorBody#' }, '5xx': { $ref: 'ErrorBody#' } }
    },
    handlerTimeout: fastify.config.aggregate.deadlineMs + HANDLER_GRACE_MS,
    config: { aggregate: true }
  }, async (request, reply) => {
    const outcome = await fastify.aggregator.aggregate(request.params.userId, {
      signal: request.signal,
      requestId: request.id,
      queuedMs: fastify.admission.queuedMs(request.raw)
    })
    request.upstreamReports = outcome.upstreams
    if (!outcome.ok) throw outcome.error
    reply.header('x-aggregate-complete', String(outcome.body.meta.complete))
    return outcome.body
  })
}

export default aggregateRoutes
