import { randomUUID } from 'node:crypto'
import { LogController, type FastifyReply, type FastifyServerOptions, type RawRequestDefaultExpression } from 'fastify'
import type { Config } from './config.js'
import { errorBody } from './plugins/error-handler.js'

// A caller's request id is reused only if it is short and plain: it goes into logs and upstream headers.
const ACCEPTABLE_REQUEST_ID = /^[\w.:-]{1,128}$/

function requestIdFor (request: RawRequestDefaultExpression): string {
  const offered = request.headers['x-request-id']
  return typeof offered === 'string' && ACCEPTABLE_REQUEST_ID.test(offered) ? offered : randomUUID()
}

/** Fastify's options, shared by the server and the tests so both run the same gateway. */
export function serverOptions (config: Config, { logger = true }: { logger?: boolean } = {}): FastifyServerOptions {
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
    // Slow clients cannot hold a socket forever; idle keep-alive outlives a typical load balancer's 60 s.
    requestTimeout: 30_000,
    keepAliveTimeout: 72_000,
    // A malformed URL escape is answered before routing, so it gets the same JSON error body here.
    frameworkErrors: (error, request, reply: FastifyReply) => {
      reply.code(400).send(errorBody(request.id, 400, 'AGG_ERR_BAD_REQUEST', `Invalid URL: ${error.message.slice(0, 200)}`))
    },
    return503OnClosing: true,
    forceCloseConnections: 'idle'
  }
}
