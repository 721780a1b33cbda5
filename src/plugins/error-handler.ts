import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { errorBody, ErrorBodySchema } from '../lib/contract/error-body.js'
import { RouteNotFoundError } from '../errors.js'

/**
 * One place turns every error into JSON: validation errors are 400 with the rule that failed, our coded errors keep
 * their message, and any other 5xx says only "Internal Server Error" (the details go to the log, never the client).
 */
export default fp(async function errorHandler (fastify) {
  const { retryAfterSeconds } = fastify.config.loadShedding
  fastify.addSchema(ErrorBodySchema)

  function send (request: FastifyRequest, reply: FastifyReply, statusCode: number, code: string, message: string) {
    if (statusCode === 503 && !reply.hasHeader('retry-after')) reply.header('retry-after', retryAfterSeconds)
    request.errorCode = code
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
    return send(request, reply, statusCode, exposeDetails ? error.code ?? 'AGG_ERR_INTERNAL' : 'AGG_ERR_INTERNAL', exposeDetails ? error.message : 'Internal Server Error')
  })

  fastify.setNotFoundHandler((request, reply) => {
    const error = new RouteNotFoundError(request.method, request.url.split('?')[0]!.slice(0, 200))
    return send(request, reply, 404, error.code, error.message)
  })
}, { name: 'error-handler', dependencies: ['config', 'request-tracing'] })

function describeValidationError ({ instancePath, message, params }: { instancePath: string, message?: string, params: Record<string, unknown> }) {
  const field = instancePath.replace(/^\//, '') || 'value'
  return params.pattern ? `${field} must match ${String(params.pattern)}` : `${field} ${message ?? 'is invalid'}`
}
