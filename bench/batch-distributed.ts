import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { UPSTREAM_NAMES, upstreamVariable } from '../src/lib/contract/upstreams.js'
import { alternate } from './lib/context.js'
import { BESIDE_BATCH, besideBatchSetup, runBesideBatch } from './lib/load.js'
import { SCRIPTS, startService, type Service } from './lib/processes.js'

// One batch, in process and across processes: N users with every upstream at L ms, 50 calls in flight per upstream.
// In process: one gateway, BATCH_IO_CONCURRENCY=50. Across processes: a gateway that takes no items, its own Redis, and
// 1, 2 or 3 batch-worker processes with BATCH_IO_CONCURRENCY = ceil(50 / workers) each and
// BATCH_GLOBAL_IO_CONCURRENCY=50, so the upstream limit, not the workers, bounds every variant: the physical limit is
// N / 50 × L.
// Run from the build: npm run build && npm run build:bench && node dist/bench/batch-distributed.js [--users 10000]
// [--latency 100] [--rounds 2] [--workers 1,2,3] [--interactive]. With --interactive, each round also sends GET
// /aggregate for other users to the variant's gateway at 20/s for 8 s, before the batch and again from 3 s into it, as
// scenario 13 does: how much a batch slows interactive traffic when it runs in the gateway's process and when it runs in
// worker processes. Needs redis-server (Debian: apt-get install redis-server).
// Writes bench/results/batch-distributed.{json,md} (or batch-distributed-<users>x<latency>ms.* when not the defaults). Every process listens on a free port (not BENCH_PORTS), so this
// runs beside the main benchmark or another checkout's.

const { values: options } = parseArgs({
  options: {
    users: { type: 'string', default: '10000' },
    latency: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '2' },
    workers: { type: 'string', default: '1,2,3' },
    interactive: { type: 'boolean', default: false }
  }
})
const USERS = Number(options.users)
const LATENCY_MS = Number(options.latency)
const ROUNDS = Number(options.rounds)
const WORKER_COUNTS = options.workers.split(',').map(Number)
const LIMIT = 50
const WARM_UP_USERS = Math.min(USERS, 500)
const INTERACTIVE = options.interactive
const INTERACTIVE_SECONDS = 8

const DIST = join(dirname(fileURLToPath(import.meta.url)), '..')
const WORKER_SCRIPT = join(DIST, 'src/batch-worker.js')
const RESULTS = join(DIST, '../bench/results')

interface Measurement {
  /** POST until the batch was seen completed, polled every 100 ms: what a client waits. */
  wallSeconds: number
  /** The batch's own durationMs: first item taken to last line written. */
  batchSeconds: number
  lines: number
  distinctIndexes: number
  /** Items answered complete, and items with a retried call (a try past BATCH_ITEM_TIMEOUT_MS, say). */
  ok: number
  retried: number
  /** Most calls any one upstream had in flight at once. */
  maxInFlight: number
  /** Calls in flight at the orders mock, sampled every 100 ms while the batch ran: how full the 50 slots were kept. */
  meanInFlight: number
  /** CPU seconds (user + system, all threads) of every process of the variant: gateway, workers, redis-server. */
  cpuSeconds: number
  requests: number
  /** With --interactive: p99 of GET /aggregate in milliseconds, before the batch and during it. */
  interactiveP99Ms?: { alone: number | null, during: number | null }
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function startRedis (): Promise<{ url: string, pid: number, stop (): Promise<void> }> {
  if (spawnSync('redis-server', ['--version']).status !== 0) throw new Error('redis-server is not installed (Debian: apt-get install redis-server)')
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], { stdio: 'ignore' })
  const url = `redis://127.0.0.1:${port}`
  for (let attempt = 0; spawnSync('redis-cli', ['-u', url, 'ping'], { encoding: 'utf8' }).stdout?.trim() !== 'PONG'; attempt++) {
    if (attempt > 100) throw new Error('redis-server did not answer')
    await sleep(100)
  }
  return { url, pid: child.pid!, stop: async () => { child.kill('SIGTERM'); await once(child, 'exit') } }
}

/** Starts a service on a free port and checks that what answers there is that process, not someone else's. */
async function startOwn (name: string, script: string, args: string[], env: (port: number) => Record<string, string>): Promise<Service> {
  const port = await freePort()
  const service = await startService(name, script, args, env(port), `http://127.0.0.1:${port}`)
  await sleep(200)
  if (service.process.exitCode !== null) throw new Error(`${name}: exited (port ${port} taken?)`)
  return service
}

async function startMocks () {
  const services = await Promise.all(UPSTREAM_NAMES.map((name) => startOwn(`mock ${name}`, SCRIPTS.mock, [name], (port) => ({ MOCK_PORT: String(port) }))))
  const origins = Object.fromEntries(UPSTREAM_NAMES.map((name, index) => [name, services[index]!.origin]))
  const call = async (name: string, path: string, method: string, body?: unknown) => {
    const response = await fetch(`${origins[name]}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
    if (!response.ok) throw new Error(`mock ${name}: ${method} ${path} answered ${response.status}`)
    return await response.json() as { maxInFlight: number, inFlight: number, requests: number }
  }
  return {
    services,
    env: Object.fromEntries(UPSTREAM_NAMES.map((name) => [upstreamVariable(name, 'URL'), origins[name]!])),
    configure: (settings: Record<string, unknown>) => Promise.all(UPSTREAM_NAMES.map((name) => call(name, '/__control', 'PUT', settings))),
    resetStats: () => Promise.all(UPSTREAM_NAMES.map((name) => call(name, '/__stats', 'DELETE'))),
    stats: () => Promise.all(UPSTREAM_NAMES.map((name) => call(name, '/__stats', 'GET'))),
    inFlight: async (name: string) => (await call(name, '/__stats', 'GET')).inFlight
  }
}
type Mocks = Awaited<ReturnType<typeof startMocks>>

async function startWorker (env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, [WORKER_SCRIPT], { env: { ...process.env, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  child.stdout!.on('data', (chunk) => { output += chunk })
  for (let waited = 0; !output.includes('batch worker taking items'); waited += 100) {
    if (child.exitCode !== null || waited > 30_000) throw new Error(`the batch worker did not start: ${output}`)
    await sleep(100)
  }
  child.stdout!.resume()
  return child
}

/** CPU seconds (user + system, all threads) a process has used, from /proc/<pid>/stat (utime and stime, 100 Hz ticks). */
function cpuSecondsOf (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

const interactive = (gateway: Service) => runBesideBatch(gateway.origin, INTERACTIVE_SECONDS)

async function runBatch (gateway: Service, mocks: Mocks, pids: number[], users: number, withInteractive = false): Promise<Measurement> {
  const alone = withInteractive ? await interactive(gateway) : null
  await mocks.resetStats()
  const cpuBefore = pids.reduce((total, pid) => total + cpuSecondsOf(pid), 0)
  const userIds = Array.from({ length: users }, (_, index) => `batch-bench-${index}`)
  const startedAt = performance.now()
  const created = await fetch(`${gateway.origin}/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userIds }) })
  const body = await created.text()
  if (created.status !== 202) throw new Error(`POST /batches answered ${created.status}: ${body.slice(0, 300)}`)
  const { id } = JSON.parse(body) as { id: string }
  const during = withInteractive ? sleep(BESIDE_BATCH.afterMs).then(() => interactive(gateway)) : null
  let view: { status: string, durationMs: number, ok: number, retried: number } = { status: 'queued', durationMs: 0, ok: 0, retried: 0 }
  const inFlightSamples: number[] = []
  do {
    await sleep(100)
    if (view.status === 'running') inFlightSamples.push(await mocks.inFlight('orders'))
    const response = await fetch(`${gateway.origin}/batches/${id}`)
    // A 503 (a busy gateway shedding): ask again at the next tick.
    if (response.ok) view = await response.json() as typeof view
    else await response.body?.cancel()
  } while (view.status === 'queued' || view.status === 'running')
  const wallSeconds = (performance.now() - startedAt) / 1000
  const cpuSeconds = pids.reduce((total, pid) => total + cpuSecondsOf(pid), 0) - cpuBefore
  if (view.status !== 'completed') throw new Error(`the batch ended ${JSON.stringify(view)}`)
  const text = await (await fetch(`${gateway.origin}/batches/${id}/results`)).text()
  const indexes = text.split('\n').filter((line) => line !== '').map((line) => (JSON.parse(line) as { index: number }).index)
  const stats = await mocks.stats()
  const interactiveP99Ms = alone && during ? { alone: alone.accepted.p99Ms, during: (await during).accepted.p99Ms } : undefined
  return {
    interactiveP99Ms,
    wallSeconds,
    batchSeconds: view.durationMs / 1000,
    lines: indexes.length,
    distinctIndexes: new Set(indexes).size,
    ok: view.ok,
    retried: view.retried,
    maxInFlight: Math.max(...stats.map((stat) => stat.maxInFlight)),
    meanInFlight: inFlightSamples.reduce((total, sample) => total + sample, 0) / Math.max(1, inFlightSamples.length),
    cpuSeconds,
    requests: stats.reduce((total, stat) => total + stat.requests, 0)
  }
}

const median = (values: number[]) => [...values].sort((left, right) => left - right)[Math.floor(values.length / 2)]!
const interactiveRatio = ({ interactiveP99Ms: p99 }: Measurement) => p99?.alone && p99.during ? (p99.during / p99.alone).toFixed(2) : '?'

const mocks = await startMocks()
// The same work in every variant however busy the machine: tries that a slow machine does not time out, and no circuit
// that opens because every call looks slow on it (both would turn upstream calls into instant fallbacks).
const roomy = {
  ...Object.fromEntries(UPSTREAM_NAMES.flatMap((name) => [[upstreamVariable(name, 'TIMEOUT_MS'), '5000'], [upstreamVariable(name, 'CIRCUIT_BREAKER'), 'false']])),
  AGGREGATE_DEADLINE_MS: '10000',
  BATCH_ITEM_TIMEOUT_MS: '5000'
}
const common = { ...mocks.env, ...roomy, BATCH_MAX_USERS: String(USERS) }
const started: Array<{ stop (): Promise<unknown> }> = []
// Shedding off: the batch's own status polls must not be refused while the batch keeps the gateway busy.
const startGateway = async (name: string, env: Record<string, string>) => {
  const gateway = await startOwn(name, SCRIPTS.gateway, [], (port) => ({ ...common, ...env, LOAD_SHEDDING_ENABLED: 'false', PORT: String(port), OBSERVABILITY_PORT: '0' }))
  started.push(gateway)
  return gateway
}
try {
  await mocks.configure({ latencyMs: LATENCY_MS, jitterMs: 0 })
  const inProcess = await startGateway('gateway in process', { BATCH_IO_CONCURRENCY: String(LIMIT) })
  // Every variant runs from start to end on its own processes and its own Redis, started once and warmed up with a
  // small batch, so no variant pays for starting processes or for code not yet optimised while it is measured.
  const variants = [{ name: 'in process', gateway: inProcess, pids: [inProcess.process.pid!] }]
  for (const count of WORKER_COUNTS) {
    const redis = await startRedis()
    started.push(redis)
    const gateway = await startGateway(`gateway on Redis for ${count}`, { BATCH_REDIS_URL: redis.url, BATCH_GATEWAY_TAKES_ITEMS: 'false', BATCH_GLOBAL_IO_CONCURRENCY: String(LIMIT) })
    const workerEnv = { ...mocks.env, ...roomy, BATCH_REDIS_URL: redis.url, BATCH_IO_CONCURRENCY: String(Math.ceil(LIMIT / count)) }
    const workers = await Promise.all(Array.from({ length: count }, () => startWorker(workerEnv)))
    for (const worker of workers) started.push({ stop: async () => { worker.kill('SIGTERM'); await once(worker, 'exit') } })
    variants.push({ name: `${count} worker process${count > 1 ? 'es' : ''}`, gateway, pids: [gateway.process.pid!, redis.pid, ...workers.map((worker) => worker.pid!)] })
  }
  for (const variant of variants) await runBatch(variant.gateway, mocks, variant.pids, WARM_UP_USERS)
  const results = await alternate(ROUNDS, variants.map((variant) => ({
    name: variant.name,
    measure: async () => {
      const measurement = await runBatch(variant.gateway, mocks, variant.pids, USERS, INTERACTIVE)
      const p99 = measurement.interactiveP99Ms
      console.log(`  ${variant.name}: ${measurement.wallSeconds.toFixed(2)} s, ${measurement.lines} lines, ${measurement.ok} complete, ${measurement.retried} retried, max ${measurement.maxInFlight} in flight (mean ${measurement.meanInFlight.toFixed(1)}), ${measurement.cpuSeconds.toFixed(1)} CPU s${p99 ? `, interactive p99 ${p99.alone?.toFixed(0)} ms alone, ${p99.during?.toFixed(0)} ms during (${interactiveRatio(measurement)}×)` : ''}`)
      return measurement
    }
  })))
  const physicalSeconds = (USERS / LIMIT) * LATENCY_MS / 1000
  const baseline = median(results['in process']!.map((measurement) => measurement.wallSeconds))
  const rows = Object.entries(results).map(([name, measurements]) => {
    const wall = median(measurements.map((measurement) => measurement.wallSeconds))
    return [
      name,
      `${wall.toFixed(2)} (${Math.min(...measurements.map((m) => m.wallSeconds)).toFixed(2)}–${Math.max(...measurements.map((m) => m.wallSeconds)).toFixed(2)})`,
      median(measurements.map((measurement) => measurement.batchSeconds)).toFixed(2),
      (wall / physicalSeconds).toFixed(3),
      (wall / baseline).toFixed(3),
      `${Math.max(...measurements.map((measurement) => measurement.maxInFlight))} (${median(measurements.map((measurement) => measurement.meanInFlight)).toFixed(1)})`,
      (1000 * median(measurements.map((measurement) => measurement.cpuSeconds)) / USERS).toFixed(2),
      measurements.map((measurement) => `${measurement.lines}/${measurement.distinctIndexes}`).join(', '),
      ...(INTERACTIVE ? [measurements.map(interactiveRatio).join(', ')] : [])
    ]
  })
  const table = [
    `| variant | wall time, s (median, range) | batch durationMs, s | ÷ physical limit | ÷ in process | calls in flight on one upstream: most (mean) | CPU ms per item, all processes | lines / distinct indexes per round |${INTERACTIVE ? ' interactive p99 during ÷ alone, per round |' : ''}`,
    `|---|---|---|---|---|---|---|---|${INTERACTIVE ? '---|' : ''}`,
    ...rows.map((row) => `| ${row.join(' | ')} |`)
  ].join('\n')
  const setup = `${USERS} users, every upstream at ${LATENCY_MS} ms (no jitter), ${LIMIT} in flight per upstream: physical limit ${physicalSeconds.toFixed(1)} s.${INTERACTIVE ? ` To the variant's gateway, ${besideBatchSetup(INTERACTIVE_SECONDS)} (those requests are in the wall time and the CPU, and their calls in the mocks' peak in flight).` : ''} ${ROUNDS} round(s), alternating in ABBA order; each variant on its own processes (and Redis), started once and warmed up with ${WARM_UP_USERS} users. Node ${process.version}, ${spawnSync('nproc', { encoding: 'utf8' }).stdout.trim()} cores, load average before the run: ${spawnSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).stdout.split(' ').slice(0, 3).join(' ')}.`
  console.log(`\n${setup}\n\n${table}`)
  mkdirSync(RESULTS, { recursive: true })
  const file = `${USERS === 10_000 && LATENCY_MS === 100 ? 'batch-distributed' : `batch-distributed-${USERS}x${LATENCY_MS}ms`}${INTERACTIVE ? '-interactive' : ''}`
  writeFileSync(join(RESULTS, `${file}.json`), `${JSON.stringify({ users: USERS, latencyMs: LATENCY_MS, limit: LIMIT, rounds: ROUNDS, results }, null, 2)}\n`)
  writeFileSync(join(RESULTS, `${file}.md`), `${setup}\n\n${table}\n`)
} finally {
  await Promise.all([...started, ...mocks.services].map((service) => service.stop()))
}
