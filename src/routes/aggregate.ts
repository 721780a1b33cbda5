import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { AggregateFailure } from '../lib/aggregate/aggregator.js'
import { AggregateParams, AggregateQuerystring, aggregateBodySchema, type UpstreamReports } from '../lib/contract/response.js'

// Behind the deadline, a last bound on the whole handler: a merge already running is allowed this long to finish.
const HANDLER_GRACE_MS = 1000

const WRITES_INFO = new Set(['info', 'debug', 'trace'])

/** What the request's log line says about an aggregate: each upstream's latency when complete, else its full report. */
function bindOutcome (request: FastifyRequest, complete: boolean, upstreams: UpstreamReports | undefined) {
  // A child logger per request is wasted when the line is not written.
  if (upstreams === undefined || !WRITES_INFO.has(request.log.level)) return
  if (!complete) {
    request.log = request.log.child({ complete, upstreams })
    return
  }
  // A flat object of latencies is cheap to serialise on the hot path.
  const upstreamMs: Record<string, number> = {}
  for (const name in upstreams) upstreamMs[name] = upstreams[name]!.latencyMs
  request.log = request.log.child({ complete, upstreamMs })
}

/**
 * GET /aggregate/:userId: one user's sections, merged. The route asks the aggregator, which returns the body or throws
 * a coded error; it binds what every upstream did to the request's log line and says whether the answer is complete.
 */
const aggregateRoutes: FastifyPluginAsync = async (fastify) => {
  fastify.addSchema(aggregateBodySchema(fastify.config.registry))
  fastify.get<{ Params: AggregateParams }>('/aggregate/:userId', {
    schema: {
      summary: 'One user\'s aggregate',
      params: AggregateParams,
      querystring: AggregateQuerystring,
      response: { 200: { $ref: 'AggregateBody#' }, '4xx': { $ref: 'ErrorBody#' }, '5xx': { $ref: 'ErrorBody#' } }
    },
    handlerTimeout: fastify.config.aggregate.deadlineMs + HANDLER_GRACE_MS
  }, async (request, reply) => {
    try {
      const body = await fastify.aggregator.aggregate(request.params.userId, {
        signal: request.signal,
        requestId: request.id,
        queuedMs: fastify.admission.queuedMs(request.raw)
      })
      bindOutcome(request, body.meta.complete, body.meta.upstreams)
      reply.header('x-aggregate-complete', String(body.meta.complete))
      return body
    } catch (error) {
      bindOutcome(request, false, (error as AggregateFailure).upstreams)
      throw error
    }
  })
}

export default aggregateRoutes
