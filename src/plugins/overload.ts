import type { IncomingMessage, ServerResponse } from 'node:http'
import underPressure, { type FastifyUnderPressureOptions } from '@fastify/under-pressure'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { OverloadedError } from '../errors.js'
import { errorBody } from '../lib/contract/error-body.js'
import { channels, type AdmissionMessage, type AggregateRequestMessage, type ShedMessage } from '../lib/contract/events.js'
import { requestIdFor } from '../lib/contract/request-id.js'
import { createAdmission, type AdmissionStats, type ShedReason } from '../lib/overload/admission.js'
import { startEventLoopSampler, type EventLoopSampler } from '../lib/overload/event-loop-sampler.js'

declare module 'fastify' {
  interface FastifyInstance {
    admission: {
      /** How long this request waited in the admission queue, in ms (0 when admitted at once or not gated). */
      queuedMs (request: IncomingMessage): number
      /** The adaptive limit and its queue; null when admission is off. */
      stats (): AdmissionStats | null
    }
    eventLoop: EventLoopSampler
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

const publishShed = (reason: string) => { if (channels.shed.hasSubscribers) channels.shed.publish({ reason } satisfies ShedMessage) }

/**
 * Overload protection, in two layers. First, admission: aggregates go through an adaptive concurrency limit and a CoDel queue (src/lib/overload/admission.ts), and
 * answers the rest with a 503 written straight to the socket. It wraps the HTTP server's request listener, ahead of
 * Fastify: a rejection that went through routing, hooks, the error handler and a log line cost ~140 µs of main-thread
 * CPU, enough for a retry storm to eat the capacity it was turned away to protect. Sheds are counted, and logged as a
 * summary every 10 s instead of a line each.
 * Behind it, the backstop (@fastify/under-pressure): while the process is over a hard limit — event-loop delay,
 * event-loop utilisation (per sample interval, not since boot: under-pressure#294), heap or RSS — every request but
 * the health and observability routes gets 503 with Retry-After. Admission keeps the process off these limits; the
 * backstop catches what it cannot see, such as memory.
 */
export default fp(async function overload (fastify) {
  const settings = fastify.config.admission
  const { retryAfterSeconds } = fastify.config.loadShedding
  const server = fastify.server
  server.maxConnections = fastify.config.server.maxConnections
  const queued = new WeakMap<IncomingMessage, number>()
  const controller = settings.enabled ? createAdmission(settings) : null

  fastify.decorate('admission', { queuedMs: (request: IncomingMessage) => queued.get(request) ?? 0, stats: () => controller?.stats() ?? null })

  // A request for a user with an aggregate already admitted makes no upstream call of its own while every upstream
  // coalesces (its calls join those in flight), only a merge: it goes in beside the limit instead of waiting in the
  // queue, where it would be let in after the first calls landed and call every upstream again. At most as many such
  // joiners in flight as the queue holds (ADMISSION_MAX_QUEUE): they take the place of requests that would wait there.
  // Their merges still go through the pool's own bounded queue.
  const joinable = Object.values(fastify.config.upstreams).every((upstream) => upstream.coalesce)
  const admittedByUser = new Map<string, number>()
  let joiners = 0
  const userOf = (url: string) => url.slice(AGGREGATE_PATH.length).split('?', 1)[0]!
  // Counts the request in for its user; the returned function counts it out.
  const countIn = (userId: string, joiner: boolean) => {
    admittedByUser.set(userId, (admittedByUser.get(userId) ?? 0) + 1)
    if (joiner) joiners++
    return () => {
      const left = admittedByUser.get(userId)! - 1
      if (left === 0) admittedByUser.delete(userId)
      else admittedByUser.set(userId, left)
      if (joiner) joiners--
    }
  }

  const shedSinceSummary: Record<ShedReason, number> = { 'queue-full': 0, 'queue-timeout': 0 }
  function shed (request: IncomingMessage, response: ServerResponse, reason: ShedReason) {
    shedSinceSummary[reason]++
    publishShed(SHED_METRIC_REASONS[reason])
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
    const userId = joinable ? userOf(request.url) : ''
    if (joinable && admittedByUser.has(userId) && joiners < settings.maxQueue) {
      response.once('close', countIn(userId, true))
      fastifyListener(request, response)
      return
    }
    const onQueuedClose = () => { if (ticket !== null && 'cancel' in ticket) ticket.cancel() }
    const ticket = controller.enter((waitedMs) => {
      response.removeListener('close', onQueuedClose)
      if (joinable) {
        const countOut = countIn(userId, false)
        response.once('close', () => { controller.leave(); countOut() })
      } else {
        response.once('close', controller.leave)
      }
      if (waitedMs > 0) {
        queued.set(request, waitedMs)
        if (channels.admission.hasSubscribers) channels.admission.publish({ waitedMs } satisfies AdmissionMessage)
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
  if (controller !== null) channels.request.subscribe(onAggregate)

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
    if (controller !== null) channels.request.unsubscribe(onAggregate)
    controller?.stop()
  })

  const sampler = startEventLoopSampler()
  fastify.decorate('eventLoop', sampler)
  fastify.addHook('onClose', async () => { sampler.stop() })
  await registerBackstop(fastify, sampler)
}, { name: 'overload', dependencies: ['http'] })

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

async function registerBackstop (fastify: FastifyInstance, sampler: EventLoopSampler) {
  const settings = fastify.config.loadShedding
  if (!settings.enabled) {
    fastify.decorate('isUnderPressure', () => false)
    return
  }
  // The event loop is judged from the process's one sampler (src/lib/overload/event-loop-sampler.ts), through
  // under-pressure's health check; under-pressure itself checks memory.
  let eventLoopReason = ''
  const eventLoopHealthy = async () => {
    const { meanMs } = sampler.lag(settings.sampleIntervalMs)
    eventLoopReason = settings.maxEventLoopDelayMs > 0 && meanMs > settings.maxEventLoopDelayMs
      ? 'eventLoopDelay'
      : settings.maxEventLoopUtilization > 0 && sampler.utilization() > settings.maxEventLoopUtilization ? 'eventLoopUtilization' : ''
    return eventLoopReason === ''
  }
  // The 503 is OverloadedError's own status, and the central error handler adds Retry-After to every 503.
  const turnAway = (type: string) => {
    publishShed(type === 'healthCheck' ? eventLoopReason : type)
    return new OverloadedError()
  }

  await fastify.register(underPressure, {
    healthCheck: eventLoopHealthy,
    healthCheckInterval: settings.sampleIntervalMs,
    maxHeapUsedBytes: settings.maxHeapUsedBytes,
    maxRssBytes: settings.maxRssBytes,
    sampleInterval: settings.sampleIntervalMs,
    exposeStatusRoute: false,
    // under-pressure sends whatever the handler returns (README: "any other return value ... will be sent"); its types
    // only say void.
    pressureHandler: ((_request: FastifyRequest, _reply: FastifyReply, type: string) => turnAway(type)) as unknown as FastifyUnderPressureOptions['pressureHandler']
  })
}
