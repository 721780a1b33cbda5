import fp from 'fastify-plugin'
import type { UpstreamReports } from '../lib/aggregator.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the aggregate route so the request's log line can say what every upstream did. */
    upstreamReports: UpstreamReports | null
    /** Set by the error handler: the `code` of the error the client was sent. */
    errorCode: string | null
  }
}

/**
 * Echoes the request id (the caller's `x-request-id`, or a generated one) and writes one summary line per request,
 * with each upstream's status and latency for aggregate requests.
 */
export default fp(async function requestTracing (fastify) {
  fastify.decorateRequest('upstreamReports', null)
  fastify.decorateRequest('errorCode', null)

  fastify.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  fastify.addHook('onResponse', async (request, reply) => {
    const line: Record<string, unknown> = {
      method: request.method,
      url: request.url.length > 200 ? `${request.url.slice(0, 200)}…` : request.url,
      statusCode: reply.statusCode,
      durationMs: Math.round(reply.elapsedTime * 10) / 10
    }
    if (request.errorCode) line.error = request.errorCode
    if (request.upstreamReports) {
      line.complete = reply.getHeader('x-aggregate-complete') === 'true'
      line.upstreams = request.upstreamReports
    }
    request.log.info(line, request.upstreamReports ? 'aggregate' : 'request')
  })
}, { name: 'request-tracing' })
