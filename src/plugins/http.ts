import type { Socket } from 'node:net'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { RouteNotFoundError } from '../errors.js'
import { ErrorBody, errorBody } from '../lib/contract/error-body.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

const MAX_LOGGED_URL = 200
const loggedUrl = (url: string) => url.length > MAX_LOGGED_URL ? `${url.slice(0, MAX_LOGGED_URL)}…` : url

/**
 * The HTTP surface every route shares: the validated configuration as `fastify.config`, the request id echoed as
 * `x-request-id`, one log line per request (what a route or the error handler knew about it is bound to the request's
 * logger), every error as the documented JSON body, `Connection: close` while shutting down, and the OpenAPI document
 * at /documentation/json with Swagger UI at /documentation.
 */
export default fp<{ config: Config }>(async function http (fastify, { config }) {
  fastify.decorate('config', config)
  const { retryAfterSeconds } = config.loadShedding

  fastify.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  // A client that leaves before its answer gets a line too: otherwise the request would vanish from the logs.
  fastify.addHook('onRequestAbort', async (request) => {
    request.log.info({ method: request.method, url: loggedUrl(request.url) }, 'request abandoned by the client')
  })

  fastify.addHook('onResponse', async (request, reply) => {
    request.log.info({ method: request.method, url: loggedUrl(request.url), statusCode: reply.statusCode, durationMs: Math.round(reply.elapsedTime * 10) / 10 }, 'request')
  })

  // During shutdown, responses to requests already in flight carry `Connection: close`: a connection whose request
  // finishes after close() started would otherwise stay open until its keep-alive timeout and hold the shutdown hostage.
  let closing = false
  // Node counts a connection that has not sent a byte yet as busy (it is timing its headers), so close() would wait
  // for it until the headers timeout; a client's spare keep-alive connection, or one whose request it aborted before
  // sending, is such a connection. They carry no request: closed with the idle ones.
  const connections = new Set<Socket>()
  fastify.server.on('connection', (socket: Socket) => {
    connections.add(socket)
    socket.once('close', () => connections.delete(socket))
  })
  fastify.addHook('preClose', async () => {
    closing = true
    for (const socket of connections) if (socket.bytesRead === 0) socket.destroy()
  })
  fastify.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close')
  })

  // One place turns every error into JSON: validation errors are 400 with the rule that failed, our coded errors keep
  // their message, and any other 5xx says only "Internal Server Error" (the details go to the log, never the client).
  fastify.addSchema(ErrorBody)
  function send (request: FastifyRequest, reply: FastifyReply, statusCode: number, code: string, message: string) {
    if (statusCode === 503 && !reply.hasHeader('retry-after')) reply.header('retry-after', retryAfterSeconds)
    request.log = request.log.child({ error: code })
    return reply.code(statusCode).type('application/json; charset=utf-8').send(errorBody(request.id, statusCode, code, message))
  }

  fastify.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation) {
      return send(request, reply, 400, 'AGG_ERR_BAD_REQUEST', `Invalid ${error.validationContext ?? 'request'}: ${error.validation.map(describeValidationError).join('; ')}`)
    }
    const statusCode = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
    const ours = error.code?.startsWith('AGG_ERR_') || error.code?.startsWith('FST_')
    if (statusCode >= 500 && !ours) request.log.error({ err: error }, 'unhandled error')
    else request.log.debug({ err: error }, 'request failed')
    const exposeDetails = statusCode < 500 || ours
    // An error that knows when to come back (an open circuit) says so; other 503s get the configured Retry-After.
    const { retryAfterSeconds: retryAfter } = error as { retryAfterSeconds?: number }
    if (statusCode === 503 && retryAfter !== undefined) reply.header('retry-after', retryAfter)
    return send(request, reply, statusCode, exposeDetails ? error.code ?? 'AGG_ERR_INTERNAL' : 'AGG_ERR_INTERNAL', exposeDetails ? error.message : 'Internal Server Error')
  })

  fastify.setNotFoundHandler((request, reply) => {
    const error = new RouteNotFoundError(request.method, request.url.split('?')[0]!.slice(0, MAX_LOGGED_URL))
    return send(request, reply, 404, error.code, error.message)
  })

  await fastify.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'HTTP aggregator', version: '0.1.0', description: 'One user\'s profile, orders, recommendations, inventory and loyalty from five upstreams, merged, with what each upstream did.' }
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, index) => typeof json.$id === 'string' ? json.$id : `def-${index}` }
  })
  await fastify.register(swaggerUi, { routePrefix: '/documentation', staticCSP: true })
}, { name: 'http' })

function describeValidationError ({ instancePath, message, params }: { instancePath: string, message?: string, params: Record<string, unknown> }) {
  const field = instancePath.replace(/^\//, '') || 'value'
  return params.pattern ? `${field} must match ${String(params.pattern)}` : `${field} ${message ?? 'is invalid'}`
}
