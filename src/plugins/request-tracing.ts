import type { FastifyReply } from 'fastify'
import fp from 'fastify-plugin'
import type { UpstreamReports } from '../lib/aggregate/aggregator.js'
import { UPSTREAM_NAMES } from '../lib/contract/upstreams.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Marks the aggregate route: its requests get the aggregate log line and metrics, answered or refused. */
    aggregate?: boolean
  }
  interface FastifyRequest {
    /** Set by the aggregate route so the request's log line can say what every upstream did. */
    upstreamReports: UpstreamReports | null
    /** Set by the error handler: the `code` of the error the client was sent. */
    errorCode: string | null
  }
}

/** Whether an aggregate response was complete, as the route told the client (`x-aggregate-complete`, set on 200s). */
export function isComplete (reply: FastifyReply): boolean {
  return reply.getHeader('x-aggregate-complete') === 'true'
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

  // A client that leaves before its answer gets a line too: otherwise the request would vanish from the logs.
  fastify.addHook('onRequestAbort', async (request) => {
    request.log.info({ method: request.method, url: request.url.length > 200 ? `${request.url.slice(0, 200)}…` : request.url }, 'request abandoned by the client')
  })

  fastify.addHook('onResponse', async (request, reply) => {
    const line: Record<string, unknown> = {
      method: request.method,
      url: request.url.length > 200 ? `${request.url.slice(0, 200)}…` : request.url,
      statusCode: reply.statusCode,
      durationMs: Math.round(reply.elapsedTime * 10) / 10
    }
    if (request.errorCode) line.error = request.errorCode
    const aggregate = request.routeOptions.config.aggregate === true
    const complete = aggregate && isComplete(reply)
    if (aggregate) line.complete = complete
    const reports = request.upstreamReports
    if (reports) {
      // A complete answer needs only each upstream's latency, a flat object that is cheap to serialise on the hot
      // path; anything else gets each upstream's full report (status, fallback, HTTP status).
      if (complete) {
        const latencies: Record<string, number> = {}
        for (const name of UPSTREAM_NAMES) latencies[name] = reports[name].latencyMs
        line.upstreamMs = latencies
      } else {
        line.upstreams = reports
      }
    }
    request.log.info(line, aggregate ? 'aggregate' : 'request')
  })
}, { name: 'request-tracing' })
