import { createServer, type AddressInfo } from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { UPSTREAM_NAMES } from '../../src/lib/contract/upstreams.js'
import { startBatchWorker, type BatchWorkerProcess } from '../helpers/batch-worker-process.js'
import { buildGateway, upstreamTimeouts, type TestGateway } from '../helpers/build-gateway.js'
import { describeResponse, fetchResponse } from '../helpers/expect-response.js'
import { eventually, startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'
import { redisServerInstalled, startRedisServer, type RedisServer } from '../helpers/redis-server.js'

// Batches across processes, for real: a redis-server on a free port, two batch-worker processes taking the items, and
// two gateways that only accept and serve batches (BATCH_GATEWAY_TAKES_ITEMS=false), so every item runs in a child
// process that a test can kill. Seen from outside: the routes, the result lines and the mocks' counters.

if (!redisServerInstalled) console.warn('redis-server is not installed: the distributed batch tests are skipped (Debian: apt-get install redis-server; .ci/run installs it)')

// Each process may fetch this many items at once; together they may fetch no more than GLOBAL, so neither process can
// hold every slot and both always have items in hand.
const PER_PROCESS = 6
const GLOBAL = 10
// Upstream timeouts no busy machine misses: the breakers judge a call slow at 80% of them.
const ROOMY = upstreamTimeouts(2000)

let redis: RedisServer
let upstreams: MockUpstreams
let gateway: TestGateway
let otherGateway: TestGateway
const workers: BatchWorkerProcess[] = []
let shared: Record<string, string>

const startWorker = () => startBatchWorker({
  ...shared,
  // A killed worker's jobs are taken again within about three seconds.
  BATCH_LOCK_DURATION_MS: '2000',
  BATCH_STALLED_INTERVAL_MS: '1000',
  // Merges at the process's own priority: on a machine kept busy by other processes (contended-test.sh), low-priority
  // merges crawl by design, the merge queue fills and stage 1 pauses, and the kill test needs calls in flight to kill.
  BATCH_CPU_NICENESS: '0'
})

describe.skipIf(!redisServerInstalled)('batches across processes (BATCH_REDIS_URL)', () => {
  beforeAll(async () => {
    redis = await startRedisServer()
    upstreams = await startMockUpstreams()
    shared = {
      ...upstreams.env,
      ...ROOMY,
      AGGREGATE_DEADLINE_MS: '3000',
      BATCH_REDIS_URL: redis.url,
      BATCH_IO_CONCURRENCY: String(PER_PROCESS),
      BATCH_GLOBAL_IO_CONCURRENCY: String(GLOBAL),
      BATCH_QUEUE_SIZE: '5',
      BATCH_ITEM_TIMEOUT_MS: '2000',
      BATCH_MAX_USERS: '2000',
      BATCH_DEADLINE_MS: '60000'
    }
    const started = await Promise.allSettled([startWorker(), startWorker()])
    for (const result of started) if (result.status === 'fulfilled') workers.push(result.value)
    const failed = started.find((result) => result.status === 'rejected')
    if (failed) throw failed.reason
    const servingOnly = { ...shared, BATCH_GATEWAY_TAKES_ITEMS: 'false' }
    gateway = await buildGateway(servingOnly, { listen: true })
    otherGateway = await buildGateway(servingOnly, { listen: true })
  }, 90_000)
  afterEach(async () => { await upstreams.reset() })
  afterAll(async () => {
    await Promise.allSettled(workers.map((worker) => worker.stop()))
    await gateway?.close()
    await otherGateway?.close()
    await upstreams?.close()
    await redis?.close()
  }, 60_000)

  it('spreads a batch over two worker processes: every item exactly once, never more than the global limit in flight', async () => {
    for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 50 })
    const ids = users(400, 'spread-user')
    const id = await submit(gateway, ids)
    const events = progressEvents(otherGateway, id)
    let largestStages = { io: 0, cpuThreads: 0 }
    const done = await until(gateway, id, (body) => {
      if (body.status === 'running') largestStages = { io: Math.max(largestStages.io, body.stages.io.inFlight), cpuThreads: Math.max(largestStages.cpuThreads, body.stages.cpu.threads) }
      return body.status === 'completed'
    })
    expect(done, JSON.stringify(done)).toMatchObject({ id, status: 'completed', total: 400, done: 400, failed: 0 })
    // Read from the other gateway: any gateway serves any batch.
    expectEveryItemOnce(await resultLines(otherGateway, id), ids)
    const stats = await upstreams.allStats()
    for (const name of UPSTREAM_NAMES) {
      expect(stats[name].requests, name).toBeGreaterThanOrEqual(400)
      expect(stats[name].maxInFlight, `${name}: ${JSON.stringify(stats[name])}`).toBeLessThanOrEqual(GLOBAL)
    }
    // Both processes reported items in hand at once (one merge thread each), and their fetches added up.
    expect(largestStages.cpuThreads, JSON.stringify(largestStages)).toBe(2)
    expect(largestStages.io).toBeGreaterThan(1)
    const progress = await events
    expect(progress.length).toBeGreaterThan(1)
    expect(progress.at(-1)).toMatchObject({ status: 'completed', done: 400 })
    // Any gateway's metrics show it too, as last read from Redis.
    await eventually(async () => /aggregate_batches\{status="completed"\} [1-9]/.test((await otherGateway.inject({ url: '/metrics' })).body), 5000, 'the completed batch in /metrics')
  }, 60_000)

  it('loses no item and writes none twice when a worker process is killed mid-batch', async () => {
    // Calls long enough that the killed process surely has some in flight, and the upstreams see them abandoned.
    for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 250 })
    const ids = users(200, 'survivor-user')
    const id = await submit(gateway, ids)
    await until(gateway, id, (body) => body.done >= 40)
    const victim = workers.shift()!
    try {
      victim.child.kill('SIGKILL')
      const done = await until(gateway, id, (body) => body.status !== 'running', 60_000)
      expect(done, JSON.stringify(done)).toMatchObject({ status: 'completed', total: 200, done: 200 })
      expectEveryItemOnce(await resultLines(gateway, id), ids)
      const aborted = Object.values(await upstreams.allStats()).reduce((total, stats) => total + stats.aborted, 0)
      expect(aborted, victim.output().slice(-2000)).toBeGreaterThan(0)
    } finally {
      workers.push(await startWorker())
    }
  }, 120_000)

  it('cancels on DELETE at any gateway: every process aborts its calls, nothing more is called', async () => {
    for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 400 })
    const id = await submit(gateway, users(1000, 'cancel-user'))
    await eventually(async () => (await upstreams.mocks.orders.stats()).inFlight === GLOBAL, 10_000, 'the batch at the global limit')
    const response = await fetchResponse(`${otherGateway.origin}/batches/${id}`, { method: 'DELETE' })
    expect(response.status, describeResponse(response)).toBe(200)
    expect(response.body.status).toBe('cancelled')
    await eventually(async () => Object.values(await upstreams.allStats()).every((stats) => stats.inFlight === 0), 2000, 'every upstream idle')
    const stats = await upstreams.allStats()
    for (const name of UPSTREAM_NAMES) expect(stats[name].aborted, name).toBeGreaterThan(0)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect((await upstreams.mocks.orders.stats()).requests).toBe(stats.orders.requests)
    const view = (await fetchResponse(`${gateway.origin}/batches/${id}`)).body
    expect(view).toMatchObject({ status: 'cancelled', stages: { io: { inFlight: 0 } } })
    expect(view.done).toBeLessThan(1000)
    const lines = await resultLines(gateway, id)
    expect(lines).toHaveLength(view.done)
  })

  it('ends deadline-exceeded when the batch outlives the BATCH_DEADLINE_MS of the gateway that created it, the same way', async () => {
    const short = await buildGateway({ ...shared, BATCH_GATEWAY_TAKES_ITEMS: 'false', BATCH_DEADLINE_MS: '1000' }, { listen: true })
    try {
      for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 300 })
      const id = await submit(short, users(500, 'late-user'))
      const ended = await until(gateway, id, (body) => body.status !== 'queued' && body.status !== 'running', 10_000)
      expect(ended.status).toBe('deadline-exceeded')
      expect(ended.reason).toMatch(/deadline/)
      expect(ended.done).toBeLessThan(500)
      await eventually(async () => Object.values(await upstreams.allStats()).every((stats) => stats.inFlight === 0), 2000, 'every upstream idle')
    } finally {
      await short.close()
    }
  })
})

describe('batches across processes, with Redis unreachable', () => {
  it('boots, answers 503 with a coded error for batches instead of hanging, and still serves aggregates', async () => {
    const upstreamsHere = await startMockUpstreams()
    // A port that was free a moment ago: nothing answers there.
    const closedPort = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo
        probe.close(() => resolve(port))
      })
    })
    const lonely = await buildGateway({ ...upstreamsHere.env, BATCH_REDIS_URL: `redis://127.0.0.1:${closedPort}` }, { listen: true })
    try {
      const response = await fetchResponse(`${lonely.origin}/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userIds: ['user-1'] }) })
      expect(response.status, describeResponse(response)).toBe(503)
      expect(response.body.code).toBe('AGG_ERR_BATCH_STORE_UNAVAILABLE')
      expect((await fetchResponse(`${lonely.origin}/aggregate/user-1`)).status).toBe(200)
    } finally {
      await lonely.close()
      await upstreamsHere.close()
    }
  }, 60_000)
})

const users = (count: number, prefix: string) => Array.from({ length: count }, (_, index) => `${prefix}-${index}`)

async function submit (target: TestGateway, userIds: string[]) {
  const response = await fetchResponse(`${target.origin}/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userIds }) })
  expect(response.status, describeResponse(response)).toBe(202)
  return response.body.id as string
}

async function until (target: TestGateway, id: string, wanted: (body: Record<string, any>) => boolean, timeoutMs = 30_000) {
  let last: Record<string, any> = { status: 'unknown' }
  await eventually(async () => wanted(last = (await fetchResponse(`${target.origin}/batches/${id}`)).body), timeoutMs, 'the batch to reach the state wanted').catch((error: Error) => {
    throw new Error(`${error.message}; last seen ${JSON.stringify(last)}`)
  })
  return last
}

async function resultLines (target: TestGateway, id: string) {
  const text = await (await fetch(`${target.origin}/batches/${id}/results`)).text()
  return text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line))
}

async function progressEvents (target: TestGateway, id: string) {
  const response = await fetch(`${target.origin}/batches/${id}/events`)
  return (await response.text()).split('\n\n').filter((event) => event.startsWith('event: progress')).map((event) => JSON.parse(event.split('data: ')[1]!))
}

function expectEveryItemOnce (lines: Array<Record<string, any>>, ids: string[]) {
  const indexes = lines.map((line) => line.index as number)
  const repeated = indexes.filter((index, position) => indexes.indexOf(index) !== position)
  expect(repeated, `indexes written twice: ${repeated.slice(0, 10).join(', ')}`).toEqual([])
  const missing = ids.map((_, index) => index).filter((index) => !indexes.includes(index))
  expect(missing, `indexes missing: ${missing.slice(0, 10).join(', ')}`).toEqual([])
  for (const line of lines) expect(line.userId).toBe(ids[line.index])
}
