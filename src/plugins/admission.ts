import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { IncomingMessage, ServerResponse } from 'node:http'
import fp from 'fastify-plugin'
import { AGGREGATE_REQUEST_CHANNEL, type AggregateRequestMessage } from '../lib/aggregate/aggregator.js'
import { createAdmission, type ShedReason } from '../lib/overload/admission.js'
import { errorBody } from '../lib/contract/error-body.js'
import { requestIdFor } from '../lib/contract/request-id.js'

declare module 'fastify' {
  interface FastifyInstance {
    admission: {
      /** How long this request waited in the admission queue, in ms (0 when admitted at once or not gated). */
      queuedMs (request: IncomingMessage): number
    }
  }
}

const AGGREGATE_PATH = '/aggregate/'
// As `aggregate_load_shed_total{reason}` names them, beside under-pressure's and the merge queue's reasons.
const SHED_METRIC_REASONS: Record<ShedReason, string> = { 'queue-full': 'admission_queue_full', 'queue-timeout': 'admission_queue_timeout' }
const SHED_MESSAGES: Record<ShedReason, string> = {
  'queue-full': 'The gateway is at its concurrency limit and its queue is full; retry later',
  'queue-timeout': 'The request waited too long for a slot; retry later'
}
const SUMMARY_INTERVAL_MS = 10_000

/**
 * Admits aggregates through an adaptive concurrency limit and a CoDel queue (src/lib/overload/admission.ts), and
 * answers the rest with a 503 written straight to the socket. It wraps the HTTP server's request listener, ahead of
 * Fastify: a rejection that went through routing, hooks, the error handler and a log line cost ~140 µs of main-thread
 * CPU, enough for a retry storm to eat the capacity it was turned away to protect. Sheds are counted, and logged as a
 * summary every 10 s instead of a line each.
 */
export default fp(async function admission (fastify) {
  const settings = fastify.config.admission
  const { retryAfterSeconds } = fastify.config.loadShedding
  const server = fastify.server
  server.maxConnections = fastify.config.server.maxConnections
  const queued = new WeakMap<IncomingMessage, number>()
  const controller = settings.enabled ? createAdmission(settings) : null

  fastify.decorate('admission', { queuedMs: (request: IncomingMessage) => queued.get(request) ?? 0 })
  fastify.telemetry.setAdmissionStateSource(() => controller?.stats() ?? null)

  const shedSinceSummary: Record<ShedReason, number> = { 'queue-full': 0, 'queue-timeout': 0 }
  function shed (request: IncomingMessage, response: ServerResponse, reason: ShedReason) {
    shedSinceSummary[reason]++
    fastify.telemetry.recordShed(SHED_METRIC_REASONS[reason])
    writeError(request, response, 503, 'AGG_ERR_OVERLOADED', SHED_MESSAGES[reason], ['retry-after', String(retryAfterSeconds)])
  }

  const [fastifyListener] = server.listeners('request') as Array<(request: IncomingMessage, response: ServerResponse) => void>
  if (fastifyListener === undefined) throw new Error('admission: the HTTP server has no request listener to wrap')
  server.removeListener('request', fastifyListener)
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    // Node would answer a missing Host with an empty 400 (requireHostHeader, turned off in server-options).
    if (request.headers.host === undefined && request.httpVersion === '1.1') {
      writeError(request, response, 400, 'AGG_ERR_BAD_REQUEST', 'The Host header is required', ['connection', 'close'])
      return
    }
    if (controller === null || !request.url?.startsWith(AGGREGATE_PATH)) {
      fastifyListener(request, response)
      return
    }
    const onQueuedClose = () => { if (ticket !== null && 'cancel' in ticket) ticket.cancel() }
    const ticket = controller.enter((waitedMs) => {
      response.removeListener('close', onQueuedClose)
      response.once('close', controller.leave)
      if (waitedMs > 0) {
        queued.set(request, waitedMs)
        fastify.telemetry.recordQueueWait(waitedMs)
      }
      fastifyListener(request, response)
    }, (reason) => {
      response.removeListener('close', onQueuedClose)
      shed(request, response, reason)
    })
    if (ticket === null) return
    if ('reason' in ticket) shed(request, response, ticket.reason)
    else response.once('close', onQueuedClose)
  })

  // Own time of every finished aggregate, as the aggregator publishes it: what steers the limit.
  const onAggregate = (message: unknown) => { controller?.recordOwnTime((message as AggregateRequestMessage).ownMs) }
  if (controller !== null) subscribe(AGGREGATE_REQUEST_CHANNEL, onAggregate)

  const summary = setInterval(() => {
    const total = shedSinceSummary['queue-full'] + shedSinceSummary['queue-timeout']
    if (total === 0) return
    fastify.log.warn({ shed: { ...shedSinceSummary }, admission: controller?.stats() }, `shed ${total} aggregate requests in the last ${SUMMARY_INTERVAL_MS / 1000} s`)
    shedSinceSummary['queue-full'] = 0
    shedSinceSummary['queue-timeout'] = 0
  }, SUMMARY_INTERVAL_MS)
  summary.unref()

  fastify.addHook('onClose', async () => {
    clearInterval(summary)
    if (controller !== null) unsubscribe(AGGREGATE_REQUEST_CHANNEL, onAggregate)
    controller?.stop()
  })
}, { name: 'admission', dependencies: ['config', 'telemetry'] })

/** An error in the documented JSON shape, written without Fastify: no routing, no hooks, no per-request log line. */
function writeError (request: IncomingMessage, response: ServerResponse, statusCode: number, code: string, message: string, extraHeaders: string[]) {
  const requestId = requestIdFor(request)
  const body = JSON.stringify(errorBody(requestId, statusCode, code, message))
  response.writeHead(statusCode, [
    'content-type', 'application/json; charset=utf-8',
    'content-length', String(Buffer.byteLength(body)),
    'x-request-id', requestId,
    ...extraHeaders
  ])
  response.end(body)
}
