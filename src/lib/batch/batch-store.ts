import { Redis, type Result } from 'ioredis'
import { isFinished, type BatchResultLine, type BatchStatus, type BatchView } from './batch-contract.js'

// A distributed batch in Redis, beside the BullMQ jobs that carry its items. Every key of one batch shares a hash tag,
// so the scripts below touch one slot (Redis Cluster runs them as they run on one server):
//   aggregator:batch:{id}          hash: status, total, done, ok, partial, failed, retried, bytes, deadlineMs,
//                                  createdAt, startedAt, deadlineAt, endedAt, reason (times: the Redis server's clock)
//   aggregator:batch:{id}:results  hash: item index → its NDJSON line; the first write wins: idempotent by index
//   aggregator:batch:{id}:order    list: item indexes in the order their lines were first written
//   aggregator:batch:{id}:stages   hash: process id → what that process holds of the batch now, stamped with the time
//   aggregator:batches             sorted set: batch ids by creation time, for retention
// and a channel, aggregator:batch-ended, that says "<id> <status>" when a batch ends, so every process stops its items.

const PREFIX = 'aggregator:batch:'
const INDEX_KEY = 'aggregator:batches'
export const ENDED_CHANNEL = 'aggregator:batch-ended'

const batchKeys = (id: string) => {
  const meta = `${PREFIX}{${id}}`
  return [meta, `${meta}:results`, `${meta}:order`, `${meta}:stages`] as const
}

// Shared by the scripts: KEYS are batchKeys(id); ARGV[1] the id, ARGV[2] the channel, ARGV[3] how long to keep an ended
// batch (ms). Times come from the server (TIME), so processes on machines with different clocks agree.
const COMMON = `
local meta, results, order, stages = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function now ()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local function finish (status, reason, at)
  redis.call('HSET', meta, 'status', status, 'endedAt', at)
  if reason ~= '' then redis.call('HSET', meta, 'reason', reason) end
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[3]) end
  redis.call('PUBLISH', ARGV[2], ARGV[1] .. ' ' .. status)
end
local function passedDeadline (at)
  local deadline = redis.call('HGET', meta, 'deadlineAt')
  if deadline and at >= tonumber(deadline) then
    finish('deadline-exceeded', 'the batch deadline passed', at)
    return true
  end
  return false
end
`

// A process takes a job: the batch starts (and its deadline, BATCH_DEADLINE_MS of the gateway that created it) when its
// first job is taken; says what is left of the deadline and which of the job's items already have a result (written
// before a worker died, say). ARGV[4] the job's first index, ARGV[5] its item count.
const CLAIM = `${COMMON}
local status = redis.call('HGET', meta, 'status')
if not status then return {'missing', 0, {}} end
local at = now()
if status == 'queued' then
  redis.call('HSET', meta, 'status', 'running', 'startedAt', at, 'deadlineAt', at + tonumber(redis.call('HGET', meta, 'deadlineMs')))
  status = 'running'
end
if status ~= 'running' then return {status, 0, {}} end
if passedDeadline(at) then return {'deadline-exceeded', 0, {}} end
local recorded = {}
local first = tonumber(ARGV[4])
for offset = 0, tonumber(ARGV[5]) - 1 do recorded[offset + 1] = redis.call('HEXISTS', results, first + offset) end
return {status, tonumber(redis.call('HGET', meta, 'deadlineAt')) - at, recorded}
`

// Writes one item's line unless the batch has ended or the item already has one; the last line completes the batch.
// ARGV[4] index, ARGV[5] line, ARGV[6] ok|partial|failed, ARGV[7] retried (0|1), ARGV[8] BATCH_MAX_RESULT_BYTES.
// Returns 'written', 'duplicate', or the status of a batch that is no longer running (nothing written).
const RECORD = `${COMMON}
local status = redis.call('HGET', meta, 'status')
if status ~= 'running' then return status or 'missing' end
local at = now()
if passedDeadline(at) then return 'deadline-exceeded' end
if redis.call('HEXISTS', results, ARGV[4]) == 1 then return 'duplicate' end
local size = string.len(ARGV[5]) + 1
if tonumber(redis.call('HGET', meta, 'bytes') or '0') + size > tonumber(ARGV[8]) then
  finish('failed', 'results would exceed BATCH_MAX_RESULT_BYTES (' .. ARGV[8] .. ')', at)
  return 'failed'
end
redis.call('HSET', results, ARGV[4], ARGV[5])
redis.call('RPUSH', order, ARGV[4])
redis.call('HINCRBY', meta, 'bytes', size)
redis.call('HINCRBY', meta, ARGV[6], 1)
if ARGV[7] == '1' then redis.call('HINCRBY', meta, 'retried', 1) end
if redis.call('HINCRBY', meta, 'done', 1) >= tonumber(redis.call('HGET', meta, 'total')) then finish('completed', '', at) end
return 'written'
`

// Ends a queued or running batch (cancelled, deadline-exceeded, failed). ARGV[4] status, ARGV[5] reason. 1 if it ended it.
const END = `${COMMON}
local status = redis.call('HGET', meta, 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
finish(ARGV[4], ARGV[5], now())
return 1
`

// One process's share of a running batch, stamped with the server's time; ARGV[4] the process id, ARGV[5] its counts
// ('' removes it). Nothing is written for a batch that has ended, so its keys keep their expiry.
const REPORT = `${COMMON}
if redis.call('HGET', meta, 'status') ~= 'running' then return 0 end
if ARGV[5] == '' then return redis.call('HDEL', stages, ARGV[4]) end
return redis.call('HSET', stages, ARGV[4], ARGV[5] .. ',' .. now())
`

declare module 'ioredis' {
  interface RedisCommander<Context> {
    batchClaim (...keysAndArgs: Array<string | number>): Result<[string, number, number[]], Context>
    batchRecord (...keysAndArgs: Array<string | number>): Result<string, Context>
    batchEnd (...keysAndArgs: Array<string | number>): Result<number, Context>
    batchReport (...keysAndArgs: Array<string | number>): Result<number, Context>
  }
}

/** What one process holds of a batch: items fetching, waiting for a merge and merging, and its limits. */
export interface StageReport {
  fetching: number
  queued: number
  merging: number
  ioLimit: number
  queueLimit: number
  cpuLimit: number
}

export interface StoredBatch extends Pick<BatchView, 'status' | 'total' | 'done' | 'ok' | 'partial' | 'failed' | 'retried'> {
  bytes: number
  createdAt: number
  startedAt?: number
  endedAt?: number
  reason?: string
  /** Reports of the processes holding its items now (fresher than two report intervals). */
  stages: StageReport[]
  /** The server's clock when this was read. */
  now: number
}

/** How often a process reports what it holds of each batch; a report older than two intervals is ignored. */
export const STAGE_REPORT_MS = 500

export interface BatchStoreOptions {
  redisUrl: string
  retainMs: number
  maxResultBytes: number
  logger: { warn (details: object, message: string): void }
}

// A Redis that is down fails every reconnection attempt: one log line per this long is enough to say so.
const ERROR_LOG_INTERVAL_MS = 10_000

/** Logs connection errors of a Redis client or BullMQ object, at most once per ERROR_LOG_INTERVAL_MS. */
export function logConnectionErrors (emitter: { on (event: 'error', listener: (error: Error) => void): unknown }, logger: BatchStoreOptions['logger'], what: string) {
  let loggedAt = -Infinity
  emitter.on('error', (error) => {
    if (performance.now() - loggedAt < ERROR_LOG_INTERVAL_MS) return
    loggedAt = performance.now()
    logger.warn({ err: error }, `${what}: Redis (BATCH_REDIS_URL) error`)
  })
}

/**
 * The batch records a distributed batch keeps in Redis (its items travel as BullMQ jobs): status and counts, results
 * keyed by item index, per-process stage reports, and the channel that announces a batch's end. Every write that
 * depends on the batch's state is one Lua script, so processes racing on the same batch cannot double-count an item or
 * write after it has ended.
 */
export function createBatchStore ({ redisUrl, retainMs, maxResultBytes, logger }: BatchStoreOptions) {
  // Fail a command after one reconnection attempt rather than queueing it for long: an HTTP caller gets a 503, a job
  // is retried by BullMQ.
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  logConnectionErrors(redis, logger, 'batch store')
  redis.defineCommand('batchClaim', { numberOfKeys: 4, lua: CLAIM })
  redis.defineCommand('batchRecord', { numberOfKeys: 4, lua: RECORD })
  redis.defineCommand('batchEnd', { numberOfKeys: 4, lua: END })
  redis.defineCommand('batchReport', { numberOfKeys: 4, lua: REPORT })
  const common = (id: string) => [...batchKeys(id), id, ENDED_CHANNEL, retainMs]

  async function read (id: string): Promise<StoredBatch | undefined> {
    const [meta] = batchKeys(id)
    const replies = await redis.multi().hgetall(meta).hgetall(batchKeys(id)[3]).time().exec()
    if (!replies) return undefined
    const [[metaError, fields], [stagesError, stages], [timeError, time]] = replies as Array<[Error | null, unknown]> as [[Error | null, Record<string, string>], [Error | null, Record<string, string>], [Error | null, [string, string]]]
    const error = metaError ?? stagesError ?? timeError
    if (error) throw error
    if (fields.status === undefined) return undefined
    const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000)
    const count = (name: string) => Number(fields[name] ?? 0)
    const optional = (name: string) => fields[name] === undefined ? undefined : Number(fields[name])
    const reports: StageReport[] = []
    for (const value of Object.values(stages)) {
      const [fetching, queued, merging, ioLimit, queueLimit, cpuLimit, at] = value.split(',').map(Number) as number[]
      if (now - at! <= 2 * STAGE_REPORT_MS) reports.push({ fetching: fetching!, queued: queued!, merging: merging!, ioLimit: ioLimit!, queueLimit: queueLimit!, cpuLimit: cpuLimit! })
    }
    const batch: StoredBatch = {
      status: fields.status as BatchStatus,
      total: count('total'),
      done: count('done'),
      ok: count('ok'),
      partial: count('partial'),
      failed: count('failed'),
      retried: count('retried'),
      bytes: count('bytes'),
      createdAt: count('createdAt'),
      stages: reports,
      now
    }
    const startedAt = optional('startedAt')
    const endedAt = optional('endedAt')
    if (startedAt !== undefined) batch.startedAt = startedAt
    if (endedAt !== undefined) batch.endedAt = endedAt
    if (fields.reason !== undefined) batch.reason = fields.reason
    // A running batch past its deadline that no process has ended yet (none holds its items): end it on sight.
    if (batch.status === 'running' && now >= Number(fields.deadlineAt) && await end(id, 'deadline-exceeded', 'the batch deadline passed')) return await read(id)
    return batch
  }

  async function end (id: string, status: Extract<BatchStatus, 'cancelled' | 'deadline-exceeded' | 'failed'>, reason: string): Promise<boolean> {
    return await redis.batchEnd(...common(id), status, reason) === 1
  }

  return {
    redis,

    /** Records a new batch as `queued`; its items are added as jobs by the caller. */
    async create (id: string, total: number, deadlineMs: number): Promise<void> {
      const [meta] = batchKeys(id)
      const [seconds, microseconds] = await redis.time()
      const createdAt = Number(seconds) * 1000 + Math.floor(Number(microseconds) / 1000)
      await redis.multi().hset(meta, { status: 'queued', total, deadlineMs, done: 0, ok: 0, partial: 0, failed: 0, retried: 0, bytes: 0, createdAt }).zadd(INDEX_KEY, createdAt, id).exec()
    },

    read,
    end,

    /** Takes a job's items: see CLAIM. `recorded[k]`: item `first + k` already has its line. */
    async claim (id: string, first: number, count: number): Promise<{ status: BatchStatus | 'missing', remainingMs: number, recorded: boolean[] }> {
      const [status, remainingMs, recorded] = await redis.batchClaim(...common(id), first, count)
      return { status: status as BatchStatus | 'missing', remainingMs, recorded: recorded.map((flag) => flag === 1) }
    },

    /** Writes an item's line once: `written`, `duplicate` (it had one), or the status of a batch no longer running. */
    async record (id: string, line: BatchResultLine, retried: boolean): Promise<'written' | 'duplicate' | BatchStatus | 'missing'> {
      return await redis.batchRecord(...common(id), line.index, JSON.stringify(line), line.status, retried ? 1 : 0, maxResultBytes) as 'written' | 'duplicate' | BatchStatus | 'missing'
    },

    /** What this process holds of a running batch (undefined: nothing any more). */
    async report (id: string, processId: string, report: StageReport | undefined): Promise<void> {
      const value = report ? [report.fetching, report.queued, report.merging, report.ioLimit, report.queueLimit, report.cpuLimit].join(',') : ''
      await redis.batchReport(...common(id), processId, value)
    },

    /** Up to `count` result lines from position `from` of the completion order, and how many positions were read. */
    async lines (id: string, from: number, count: number): Promise<{ lines: string[], read: number }> {
      const [, results, order] = batchKeys(id)
      const indexes = await redis.lrange(order, from, from + count - 1)
      if (indexes.length === 0) return { lines: [], read: 0 }
      const lines = await redis.hmget(results, ...indexes)
      return { lines: lines.filter((line): line is string => line !== null), read: indexes.length }
    },

    /** Kept batch ids, oldest first. */
    ids: async (): Promise<string[]> => await redis.zrange(INDEX_KEY, 0, '-1'),

    /** Forgets a batch at once: its records, results and place in the index. */
    async forget (id: string): Promise<void> {
      await redis.multi().del(...batchKeys(id)).zrem(INDEX_KEY, id).exec()
    },

    /**
     * Subscribes to batch ends on a connection of its own (a subscribed connection can do nothing else): `listener`
     * gets the id and status of each batch that ends, whichever process ended it. Returns at once (the subscription
     * waits for Redis if it is not up yet, and is renewed on every reconnection) with the function that closes it.
     */
    onEnded (listener: (id: string, status: BatchStatus) => void): () => Promise<void> {
      const subscriber = redis.duplicate({ maxRetriesPerRequest: null })
      logConnectionErrors(subscriber, logger, 'batch end subscriber')
      subscriber.on('message', (_channel: string, message: string) => {
        const [id, status] = message.split(' ')
        if (id && status && isFinished(status as BatchStatus)) listener(id, status as BatchStatus)
      })
      subscriber.subscribe(ENDED_CHANNEL).catch((error: unknown) => logger.warn({ err: error }, 'could not subscribe to batch ends'))
      // Nothing to flush on a subscribed connection, and QUIT would wait for a Redis that is down.
      return async () => { subscriber.disconnect() }
    },

    async close (): Promise<void> {
      await redis.quit().catch(() => redis.disconnect())
    }
  }
}

export type BatchStore = ReturnType<typeof createBatchStore>
