import { Readable } from 'node:stream'
import type { FastifyPluginAsync } from 'fastify'
import Type, { type Static } from 'typebox'
import { BatchNotFoundError } from '../errors.js'
import { BATCH_STATUSES, isFinished, type BatchView } from '../lib/batch/batch-contract.js'
import { USER_ID_PATTERN } from '../lib/contract/response.js'

const BatchParams = Type.Object({ id: Type.String({ format: 'uuid', description: 'The id POST /batches answered with.' }) }, { additionalProperties: false })
type BatchParamsType = Static<typeof BatchParams>

const Stage = (fields: Record<string, string>) => Type.Object(Object.fromEntries(Object.entries(fields).map(([name, description]) => [name, Type.Integer({ description })])))
const Batch = Type.Object({
  id: Type.String(),
  status: Type.Enum(BATCH_STATUSES),
  total: Type.Integer(),
  done: Type.Integer(),
  ok: Type.Integer({ description: 'Items whose aggregate is complete.' }),
  partial: Type.Integer({ description: 'Items answered with a fallback for some section.' }),
  failed: Type.Integer({ description: 'Items that failed; their result line says why.' }),
  retried: Type.Integer({ description: 'Items with at least one retried upstream call.' }),
  durationMs: Type.Union([Type.Number(), Type.Null()]),
  reason: Type.Optional(Type.String()),
  stages: Type.Object({
    io: Stage({ inFlight: 'Items fetching now (stage 1).', limit: 'BATCH_IO_CONCURRENCY.' }),
    queue: Stage({ size: 'Fetched items waiting for a merge.', limit: 'BATCH_QUEUE_SIZE.' }),
    cpu: Stage({ busy: 'Merges running now (stage 2).', threads: 'BATCH_CPU_CONCURRENCY.' })
  })
}, { $id: 'Batch' })

// A 64-character id, its quotes and a comma: the body limit follows from BATCH_MAX_USERS.
const BYTES_PER_ID = 67

/**
 * Batches of aggregates: POST /batches queues one, GET /batches/:id says how it is going, /results streams its NDJSON
 * lines as they complete, /events its progress as server-sent events, and DELETE cancels it.
 */
const batchRoutes: FastifyPluginAsync = async (fastify) => {
  const { batches } = fastify
  const { maxUsers } = fastify.config.batch
  fastify.addSchema(Batch)
  const errors = { '4xx': { $ref: 'ErrorBody#' }, '5xx': { $ref: 'ErrorBody#' } }
  const found = async (id: string): Promise<BatchView> => {
    const view = await batches.get(id)
    if (!view) throw new BatchNotFoundError(id)
    return view
  }

  const CreateBody = Type.Object({
    userIds: Type.Array(Type.String({ pattern: USER_ID_PATTERN }), { minItems: 1, maxItems: maxUsers, description: `The users to aggregate, at most ${maxUsers} (BATCH_MAX_USERS); a bad id is rejected with its index.` })
  }, { additionalProperties: false })

  fastify.post<{ Body: Static<typeof CreateBody> }>('/batches', {
    schema: { summary: 'Start a batch of aggregates', body: CreateBody, response: { 202: Type.Object({ id: Type.String(), status: Type.Enum(BATCH_STATUSES) }), ...errors } },
    bodyLimit: maxUsers * BYTES_PER_ID + 1024
  }, async (request, reply) => {
    const view = await batches.create(request.body.userIds)
    reply.code(202).header('location', `/batches/${view.id}`)
    return { id: view.id, status: view.status }
  })

  fastify.get<{ Params: BatchParamsType }>('/batches/:id', {
    schema: { summary: 'A batch\'s progress', params: BatchParams, response: { 200: { $ref: 'Batch#' }, ...errors } }
  }, async (request) => await found(request.params.id))

  fastify.delete<{ Params: BatchParamsType }>('/batches/:id', {
    schema: { summary: 'Cancel a batch', params: BatchParams, response: { 200: { $ref: 'Batch#' }, ...errors } }
  }, async (request) => {
    await found(request.params.id)
    return await batches.cancel(request.params.id)
  })

  fastify.get<{ Params: BatchParamsType }>('/batches/:id/results', {
    schema: { summary: 'A batch\'s results, one NDJSON line per item as it completes (the aggregate body, or the error)', params: BatchParams }
  }, async (request, reply) => {
    await found(request.params.id)
    reply.type('application/x-ndjson')
    // Pulled as the client reads: a slow reader pauses this stream, the batch goes on writing to disk.
    return Readable.from(batches.results(request.params.id, request.signal), { objectMode: false })
  })

  fastify.get<{ Params: BatchParamsType }>('/batches/:id/events', {
    schema: { summary: 'A batch\'s progress as server-sent events, until it ends', params: BatchParams }
  }, async (request, reply) => {
    await found(request.params.id)
    reply.hijack()
    const raw = reply.raw
    raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' })
    let ended = false
    const end = () => {
      ended = true
      if (!raw.writableEnded) raw.end()
    }
    request.raw.on('close', end)
    const stop = await batches.follow(request.params.id, (view) => {
      if (ended) return
      raw.write(`event: progress\ndata: ${JSON.stringify(view)}\n\n`)
      if (isFinished(view.status)) setImmediate(end)
    })
    if (!stop) return end()
    // The response closes when the batch ends or the client goes; either may have happened while follow() resolved.
    if (ended) stop()
    else raw.on('close', stop)
  })
}

export default batchRoutes
