import { readdirSync, readFileSync } from 'node:fs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { UPSTREAM_NAMES } from '../../src/lib/contract/upstreams.js'
import { buildGateway, upstreamTimeouts, type TestGateway } from '../helpers/build-gateway.js'
import { describeResponse, fetchResponse } from '../helpers/expect-response.js'
import { eventually, startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'

// Batches through the real routes, real mocks and the real merge pool: POST, progress, NDJSON results, server-sent
// events, cancellation and the batch deadline, seen from outside.

const IO_CONCURRENCY = 10
// Upstream timeouts no busy machine misses: the breakers judge a call slow at 80% of them.
const ROOMY = upstreamTimeouts(2000)
let upstreams: MockUpstreams
let gateway: TestGateway
beforeAll(async () => {
  upstreams = await startMockUpstreams()
  gateway = await buildGateway({
    ...upstreams.env, ...ROOMY, AGGREGATE_DEADLINE_MS: '3000', BATCH_IO_CONCURRENCY: String(IO_CONCURRENCY), BATCH_QUEUE_SIZE: '5', BATCH_MAX_USERS: '2000', BATCH_ITEM_TIMEOUT_MS: '1000', BATCH_DEADLINE_MS: '60000'
  }, { listen: true })
})
afterEach(async () => { await upstreams.reset() })
afterAll(async () => {
  await gateway?.close()
  await upstreams?.close()
})

const users = (count: number, prefix = 'batch-user') => Array.from({ length: count }, (_, index) => `${prefix}-${index}`)

async function submit (userIds: string[], to: TestGateway = gateway) {
  const response = await fetchResponse(`${to.origin}/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userIds }) })
  expect(response.status, describeResponse(response)).toBe(202)
  expect(response.headers.get('location')).toBe(`/batches/${response.body.id}`)
  return response.body.id as string
}

const status = async (id: string) => (await fetchResponse(`${gateway.origin}/batches/${id}`)).body

async function until (id: string, wanted: (body: { status: string }) => boolean, timeoutMs = 20_000) {
  let last: { status: string } = { status: 'unknown' }
  await eventually(async () => wanted(last = await status(id)), timeoutMs, 'the batch to reach the status wanted').catch((error: Error) => {
    throw new Error(`${error.message}; last seen ${JSON.stringify(last)}`)
  })
  return last as Record<string, any>
}

async function resultLines (id: string) {
  const text = await (await fetch(`${gateway.origin}/batches/${id}/results`)).text()
  return text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line))
}

/** 200 users at 20 ms: completed, each user's line once and ok, never more than BATCH_IO_CONCURRENCY calls in flight. */
async function aggregatesEveryUserOnce (prefix: string) {
  for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 20 })
  const ids = users(200, prefix)
  const id = await submit(ids)
  const done = await until(id, (body) => body.status === 'completed')
  const failures = (await resultLines(id)).filter((line) => line.status !== 'ok').slice(0, 3)
  expect(done, JSON.stringify(failures)).toMatchObject({ id, status: 'completed', total: 200, done: 200, ok: 200, partial: 0, failed: 0 })
  expect(done.stages).toEqual({ io: { inFlight: 0, limit: IO_CONCURRENCY }, queue: { size: 0, limit: 5 }, cpu: { busy: 0, threads: 1 } })
  const lines = await resultLines(id)
  expect(lines).toHaveLength(200)
  expect(new Set(lines.map((line) => line.index)).size).toBe(200)
  for (const line of lines) {
    expect(line.userId).toBe(ids[line.index])
    expect(line.status).toBe('ok')
    expect(line.body.userId).toBe(line.userId)
  }
  const stats = await upstreams.allStats()
  for (const name of UPSTREAM_NAMES) {
    expect(stats[name].requests, name).toBe(200)
    expect(stats[name].maxInFlight, name).toBeLessThanOrEqual(IO_CONCURRENCY)
    expect(stats[name].maxInFlight, name).toBeGreaterThan(1)
  }
}

/** DELETE mid-batch: status cancelled, every upstream idle within a second with calls aborted, nothing called after. */
async function cancelsMidBatch (prefix: string) {
  for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 400 })
  const id = await submit(users(1000, prefix))
  await eventually(async () => (await upstreams.mocks.orders.stats()).inFlight === IO_CONCURRENCY, 5000, 'the batch at full concurrency')
  const response = await fetchResponse(`${gateway.origin}/batches/${id}`, { method: 'DELETE' })
  expect(response.status, describeResponse(response)).toBe(200)
  expect(response.body.status).toBe('cancelled')
  await eventually(async () => Object.values(await upstreams.allStats()).every((stats) => stats.inFlight === 0), 1000, 'every upstream idle')
  const stats = await upstreams.allStats()
  for (const name of UPSTREAM_NAMES) expect(stats[name].aborted, name).toBeGreaterThan(0)
  const requests = stats.orders.requests
  await new Promise((resolve) => setTimeout(resolve, 500))
  expect((await upstreams.mocks.orders.stats()).requests).toBe(requests)
  expect((await status(id)).done).toBeLessThan(1000)
}

/** A gateway with a 1 s BATCH_DEADLINE_MS (and `env`): its batch ends deadline-exceeded, every upstream idle within a second. */
async function endsAtTheDeadline (env: Record<string, string>, prefix: string) {
  const short = await buildGateway({ ...upstreams.env, ...ROOMY, ...env, AGGREGATE_DEADLINE_MS: '3000', BATCH_IO_CONCURRENCY: '5', BATCH_DEADLINE_MS: '1000', BATCH_ITEM_TIMEOUT_MS: '1000' }, { listen: true })
  try {
    for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 300 })
    const id = await submit(users(500, prefix), short)
    await eventually(async () => (await fetchResponse(`${short.origin}/batches/${id}`)).body.status === 'deadline-exceeded', 5000, 'the batch deadline')
    await eventually(async () => Object.values(await upstreams.allStats()).every((stats) => stats.inFlight === 0), 1000, 'every upstream idle')
    const view = (await fetchResponse(`${short.origin}/batches/${id}`)).body
    expect(view.done).toBeLessThan(500)
    expect(view.reason).toMatch(/deadline/)
  } finally {
    await short.close()
  }
}

/**
 * A gateway whose kept results may use 1 MiB (and `env`): a batch that would write more fails, saying why. Its calls
 * have the roomy timeout of the other batches here: at the default 200 ms, the cold first wave of a fresh gateway in
 * this busy process timed out (up to a third of the items failed, with short lines), and the required upstream's
 * circuit could open and pause the batch. Its merges run at the process's own priority (the caller sets the batch
 * thread's): on a machine kept busy by other processes (contended-test.sh) low-priority batches crawl by design.
 */
async function failsWhenResultsAreFull (env: Record<string, string>, prefix: string) {
  const small = await buildGateway({ ...upstreams.env, ...ROOMY, BATCH_CPU_NICENESS: '0', ...env, AGGREGATE_DEADLINE_MS: '3000', BATCH_ITEM_TIMEOUT_MS: '1000', BATCH_MAX_RESULT_BYTES: String(1024 * 1024) }, { listen: true })
  try {
    for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 5 })
    // About 4 KB a line: 600 lines are more than twice the 1 MiB.
    const id = await submit(users(600, prefix), small)
    await eventually(async () => (await fetchResponse(`${small.origin}/batches/${id}`)).body.status === 'failed', 20_000, 'the batch to fail')
    const view = (await fetchResponse(`${small.origin}/batches/${id}`)).body
    expect(view.reason).toMatch(/BATCH_MAX_RESULT_BYTES/)
    expect(view.done).toBeLessThan(600)
    const text = await (await fetch(`${small.origin}/batches/${id}/results`)).text()
    expect(text.length).toBeLessThanOrEqual(1024 * 1024)
    expect(text.trim().split('\n')).toHaveLength(view.done)
  } finally {
    await small.close()
  }
}

/**
 * 300 users at 5 ms: merged on BATCH_CPU_CONCURRENCY (1) threads at the default BATCH_CPU_NICENESS (10), fetched on
 * `fetchedAt` (the batch thread, at the default BATCH_THREAD_NICENESS, or the event loop), every other thread at the
 * process's own niceness; the merges counted in the gateway's merge metrics (tasks and run-time histogram).
 */
async function mergesAtLowPriority (prefix: string, fetchedAt: 'batch thread' | 'event loop') {
  for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 5 })
  const before = threads()
  const own = before.find((thread) => thread.tid === String(process.pid))!.nice
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec((await gateway.inject({ url: '/metrics' })).body)?.[1])
  const [tasksBefore, runsBefore] = [await metric('aggregate_merge_tasks_total'), await metric('aggregate_merge_run_seconds_count')]
  const id = await submit(users(300, prefix))
  await until(id, (body) => body.status === 'completed')
  // Counted with the interactive merges, in the same metrics (the batch thread's sent to the gateway's).
  expect(await metric('aggregate_merge_tasks_total') - tasksBefore).toBeGreaterThanOrEqual(300)
  expect(await metric('aggregate_merge_run_seconds_count') - runsBefore).toBeGreaterThanOrEqual(300)
  const ticksDuring = threads().map((thread) => ({ ...thread, ticks: thread.cpuTicks - (before.find((earlier) => earlier.tid === thread.tid)?.cpuTicks ?? 0) }))
  // Busy threads only: another gateway's batch thread and merge threads may be in this process too, idle (a tick or
  // two); 300 items are tens of ticks (10 ms each) of fetching and of merging.
  const busy = (nice: number) => ticksDuring.filter((thread) => thread.nice === nice && thread.ticks > 5)
  // Niceness 5: the batch thread.
  expect(busy(5)).toHaveLength(fetchedAt === 'batch thread' ? 1 : 0)
  expect(ticksDuring.filter((thread) => thread.nice !== 10 && thread.nice !== 5 && thread.nice !== own)).toEqual([])
  // Niceness 10: the batch's one merge thread.
  expect(busy(10)).toHaveLength(1)
}

/** This process's threads (the gateway runs in it) with their nice value and CPU time so far, from /proc. */
function threads () {
  return readdirSync('/proc/self/task').map((tid) => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
    // The fields after the command (in parentheses): utime is field 14, stime 15, nice 19.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { tid, nice: Number(fields[16]), cpuTicks: Number(fields[11]) + Number(fields[12]) }
  })
}

describe('a batch of aggregates (on a thread of its own, the default)', () => {
  it.runIf(process.platform === 'linux')('fetches on its thread and merges on threads of its own, at lower OS priorities than the event loop, counted in the merge metrics', () => mergesAtLowPriority('niceness-user', 'batch thread'))

  it('aggregates every user once, with at most BATCH_IO_CONCURRENCY calls in flight on any upstream', () => aggregatesEveryUserOnce('batch-user'))

  it('streams results while the batch runs, and progress as server-sent events until it ends', async () => {
    for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 50 })
    const id = await submit(users(150, 'stream-user'))
    const events = fetch(`${gateway.origin}/batches/${id}/events`).then(async (response) => {
      expect(response.headers.get('content-type')).toBe('text/event-stream')
      return (await response.text()).split('\n\n').filter((event) => event.startsWith('event: progress')).map((event) => JSON.parse(event.split('data: ')[1]!))
    })
    const response = await fetch(`${gateway.origin}/batches/${id}/results`)
    expect(response.headers.get('content-type')).toBe('application/x-ndjson')
    const reader = response.body!.getReader()
    const first = await reader.read()
    // The first lines arrive while the batch is still running.
    expect((await status(id)).status).toBe('running')
    let text = new TextDecoder().decode(first.value)
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += new TextDecoder().decode(chunk.value)
    expect(text.trim().split('\n')).toHaveLength(150)
    const progress = await events
    expect(progress.length).toBeGreaterThan(1)
    expect(progress.at(-1)).toMatchObject({ status: 'completed', done: 150 })
  })

  it('accounts for every item under 10% transient failures: ok, partial or failed with a reason; at most one retry per failed call', async () => {
    await upstreams.mocks.orders.set({ failureRate: 0.1, failureStatus: 503 })
    await upstreams.mocks.profile.set({ failureRate: 0.1, failureStatus: 503 })
    const id = await submit(users(300, 'flaky-user'))
    const done = await until(id, (body) => body.status === 'completed')
    expect(done.ok + done.partial + done.failed).toBe(300)
    expect(done.retried).toBeGreaterThan(0)
    const lines = await resultLines(id)
    expect(lines).toHaveLength(300)
    for (const line of lines) {
      if (line.status === 'failed') expect(line.error.code).toMatch(/^AGG_ERR_/)
      else for (const report of Object.values(line.body.meta.upstreams) as Array<{ attempts: number }>) expect(report.attempts).toBeLessThanOrEqual(2)
    }
    // Profile failing twice in a row fails the item, with the code a client of GET /aggregate would get.
    expect(lines.filter((line) => line.status === 'failed').every((line) => line.error.code === 'AGG_ERR_UPSTREAM_FAILED')).toBe(true)
  })

  it('cancels on DELETE: calls in flight aborted at the upstreams within a second, nothing more is called', () => cancelsMidBatch('cancel-user'))

  it('ends deadline-exceeded when the batch outlives BATCH_DEADLINE_MS, the same way', () => endsAtTheDeadline({}, 'late-user'))

  it('fails, saying why, when its results would pass BATCH_MAX_RESULT_BYTES', () => failsWhenResultsAreFull({ BATCH_THREAD_NICENESS: '0' }, 'full-user'))

  it('is cancelled by a DELETE that arrives while its thread is still starting', async () => {
    const fresh = await buildGateway({ ...upstreams.env, ...ROOMY, AGGREGATE_DEADLINE_MS: '3000', BATCH_IO_CONCURRENCY: '5' }, { listen: true })
    try {
      for (const name of UPSTREAM_NAMES) await upstreams.mocks[name].set({ latencyMs: 300 })
      const id = await submit(users(500, 'thread-early-user'), fresh)
      const response = await fetchResponse(`${fresh.origin}/batches/${id}`, { method: 'DELETE' })
      expect(response.body.status).toBe('cancelled')
      await new Promise((resolve) => setTimeout(resolve, 500))
      expect(Object.values(await upstreams.allStats()).every((stats) => stats.requests === 0)).toBe(true)
    } finally {
      await fresh.close()
    }
  })
})

describe('a batch on the event loop (BATCH_ON_THREAD=false)', () => {
  // The helpers above talk to `gateway`: this block points it at a gateway whose batches run on its event loop.
  const ON_LOOP = { BATCH_ON_THREAD: 'false' }
  let onThread: TestGateway
  beforeAll(async () => {
    onThread = gateway
    gateway = await buildGateway({
      ...upstreams.env, ...ROOMY, ...ON_LOOP, AGGREGATE_DEADLINE_MS: '3000', BATCH_IO_CONCURRENCY: String(IO_CONCURRENCY), BATCH_QUEUE_SIZE: '5', BATCH_MAX_USERS: '2000', BATCH_ITEM_TIMEOUT_MS: '1000', BATCH_DEADLINE_MS: '60000'
    }, { listen: true })
  })
  afterAll(async () => {
    await gateway?.close()
    gateway = onThread
  })

  it('aggregates every user once, as on the thread, with at most BATCH_IO_CONCURRENCY calls in flight on any upstream', async () => {
    await aggregatesEveryUserOnce('loop-user')
    expect((await fetchResponse(`${gateway.origin}/aggregate/loop-interactive-user`)).status).toBe(200)
  })

  it.runIf(process.platform === 'linux')('merges on threads of its own, at a lower OS priority, counted in the merge metrics', () => mergesAtLowPriority('loop-niceness-user', 'event loop'))

  it('cancels on DELETE: calls in flight aborted at the upstreams within a second', () => cancelsMidBatch('loop-cancel-user'))

  it('ends deadline-exceeded when the batch outlives BATCH_DEADLINE_MS, the same way', () => endsAtTheDeadline(ON_LOOP, 'loop-late-user'))

  it('fails, saying why, when its results would pass BATCH_MAX_RESULT_BYTES', () => failsWhenResultsAreFull(ON_LOOP, 'loop-full-user'))
})

describe('POST /batches', () => {
  const post = (body: unknown) => fetchResponse(`${gateway.origin}/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  it('rejects a bad id up front, naming its index, and calls no upstream', async () => {
    const response = await post({ userIds: ['user-1', 'user-2', '../etc/passwd', 'user-4'] })
    expect(response.status).toBe(400)
    expect(response.body.code).toBe('AGG_ERR_BAD_REQUEST')
    expect(response.body.message).toContain('userIds/2')
    expect((await upstreams.mocks.profile.stats()).requests).toBe(0)
  })

  it('rejects an empty batch and one over BATCH_MAX_USERS', async () => {
    expect((await post({ userIds: [] })).status).toBe(400)
    const tooMany = await post({ userIds: users(2001) })
    expect(tooMany.status).toBe(400)
    expect(tooMany.body.message).toContain('2000')
  })

  it('answers 404 for a batch it does not know', async () => {
    const response = await fetchResponse(`${gateway.origin}/batches/00000000-0000-4000-8000-000000000000`)
    expect(response.status).toBe(404)
    expect(response.body.code).toBe('AGG_ERR_BATCH_NOT_FOUND')
  })
})
