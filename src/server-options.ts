import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import { LogController, type FastifyHttpOptions, type FastifyReply } from 'fastify'
import type { Config } from './config.js'
import { errorBody, reasonPhrase } from './lib/contract/error-body.js'
import { requestIdFor } from './lib/contract/request-id.js'

/** An error answered before any request object exists (by the HTTP parser), in the same JSON shape as every other. */
function clientErrorResponse (error: NodeJS.ErrnoException): { statusCode: number, code: string, message: string } {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT': return { statusCode: 408, code: 'AGG_ERR_REQUEST_TIMEOUT', message: 'The request was not received in time' }
    case 'HPE_HEADER_OVERFLOW': return { statusCode: 431, code: 'AGG_ERR_HEADERS_TOO_LARGE', message: 'The request headers are too large' }
    default: return { statusCode: 400, code: 'AGG_ERR_BAD_REQUEST', message: 'The request could not be parsed as HTTP' }
  }
}

/** Fastify's options, shared by the server and the tests so both run the same gateway. */
export function serverOptions (config: Config, { logger = true }: { logger?: boolean } = {}): FastifyHttpOptions<Server> {
  return {
    logger: logger && {
      level: config.logLevel,
      // Pretty output for a person at a terminal; JSON lines for everything else.
      ...(process.stdout.isTTY ? { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l' } } } : {})
    },
    // Our own hook writes one line per request (src/plugins/request-tracing.ts) instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    genReqId: requestIdFor,
    // Longer than any URL Node accepts, so an over-long id reaches validation and gets a 400, not a router 404.
    routerOptions: { maxParamLength: 16 * 1024 },
    bodyLimit: 16 * 1024,
    // Slow clients cannot hold a socket forever; idle keep-alive outlives a typical load balancer's 60 s. Node answers
    // a request without Host itself, with an empty 400: the admission gate answers it in our JSON shape instead.
    requestTimeout: config.server.requestTimeoutMs,
    keepAliveTimeout: config.server.keepAliveTimeoutMs,
    http: { headersTimeout: config.server.headersTimeoutMs, requireHostHeader: false },
    // A malformed URL escape is answered before routing, so it gets the same JSON error body here.
    frameworkErrors: (error, request, reply: FastifyReply) => {
      reply.code(400).send(errorBody(request.id, 400, 'AGG_ERR_BAD_REQUEST', `Invalid URL: ${error.message.slice(0, 200)}`))
    },
    clientErrorHandler (error: NodeJS.ErrnoException, socket: Socket) {
      if (error.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return
      const { statusCode, code, message } = clientErrorResponse(error)
      const body = JSON.stringify(errorBody(randomUUID(), statusCode, code, message))
      socket.end(`HTTP/1.1 ${statusCode} ${reasonPhrase(statusCode)}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
    },
    // Starting the merge threads (each loads and warms the merge) can take longer than Fastify's 10 s default on a
    // busy machine; a start that fails for it is worse than a slow one.
    pluginTimeout: 60_000,
    return503OnClosing: true,
    forceCloseConnections: 'idle'
  }
}
