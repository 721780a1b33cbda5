import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { strict as assert } from 'node:assert'
import { readFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { basename, dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

// End-to-end test of the compose stack, for real: build the image, check what it holds, start gateway + five mocks,
// exercise the gateway through its published port, run a batch on Redis and two batch workers (profile distributed),
// stop the gateway with SIGTERM while a request is in flight, and check it drained and exited 0. Works with
// `docker compose` (v2) and `docker-compose` (v1.29). Tears everything down, images included, even when a step fails.
// Run: npm run test:compose. The gateway and its metrics are published on free ports of 127.0.0.1 unless
// GATEWAY_PUBLISH / GATEWAY_OBSERVABILITY_PUBLISH say otherwise (e.g. GATEWAY_PUBLISH=127.0.0.1:3000).

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..')
// Unique per checkout and run: the project name also names the images (docker-compose.yml), so two checkouts or two
// runs on one Docker host never share containers, networks or images.
const checkout = basename(root).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 24)
const project = `aggregator-e2e-${checkout || 'checkout'}-${process.pid}`

/** Ports the kernel hands out and takes back at once: free now, and not the defaults anyone else's stack uses. */
async function freePorts (count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
    const server = createServer().once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })))
  const ports = servers.map((server) => (server.address() as AddressInfo).port)
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
  return ports
}

const [gatewayPort, observabilityPort] = await freePorts(2)
const env = {
  ...process.env,
  COMPOSE_PROJECT_NAME: project,
  GATEWAY_PUBLISH: process.env.GATEWAY_PUBLISH || `127.0.0.1:${gatewayPort}`,
  GATEWAY_OBSERVABILITY_PUBLISH: process.env.GATEWAY_OBSERVABILITY_PUBLISH || `127.0.0.1:${observabilityPort}`,
  DOCKER_BUILDKIT: '1',
  COMPOSE_DOCKER_CLI_BUILD: '1'
}
// Where the gateway and its observability port are published, read back from Docker after each `up`.
let gateway = ''
let observability = ''

function composeCommand (): string[] {
  if (spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' }).status === 0) return ['docker', 'compose']
  if (spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0) return ['docker-compose']
  throw new Error('needs `docker compose` (v2) or `docker-compose` (v1)')
}

const [composeBinary, ...composePrefix] = composeCommand()
const files = ['-f', 'docker-compose.yml']

function compose (args: string[], { files: extraFiles = [] as string[], check = true, quiet = false, variables = {} as Record<string, string> } = {}): SpawnSyncReturns<string> {
  const result = spawnSync(composeBinary!, [...composePrefix, '-p', project, ...files, ...extraFiles, ...args], {
    cwd: root, env: { ...env, ...variables }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000
  })
  if (!quiet && result.stdout) process.stdout.write(result.stdout)
  if (check && result.status !== 0) throw new Error(`compose ${args.join(' ')} failed (${result.status}):\n${result.stderr}`)
  return result
}

/** Runs JavaScript inside the gateway container, i.e. inside the compose network, where the mocks are. */
function insideNetwork (script: string): string {
  return compose(['exec', '-T', 'gateway', 'node', '-e', script], { quiet: true }).stdout.trim()
}

function setMock (upstream: string, port: number, settings: Record<string, unknown>) {
  insideNetwork(`fetch('http://${upstream}:${port}/__control', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: ${JSON.stringify(JSON.stringify(settings))} }).then(async (r) => { if (!r.ok) process.exit(1); console.log(await r.text()) })`)
}

function mockStats (upstream: string, port: number): { inFlight: number, requests: number } {
  return JSON.parse(insideNetwork(`fetch('http://${upstream}:${port}/__stats').then(async (r) => console.log(await r.text()))`))
}

/** The host address Docker published a service's port on, as a base URL (`compose port`). */
function publishedUrl (service: string, port: number, extraFiles: string[] = []): string {
  const address = compose(['port', service, String(port)], { files: extraFiles, quiet: true }).stdout.trim()
  const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(address)
  if (!match) throw new Error(`compose port ${service} ${port} printed ${JSON.stringify(address)}`)
  const host = match[1] === '0.0.0.0' || match[1] === '::' ? '127.0.0.1' : match[1]
  return `http://${host}:${match[2]}`
}

function findPublishedPorts (extraFiles: string[] = []) {
  gateway = publishedUrl('gateway', 3000, extraFiles)
  observability = publishedUrl('gateway', 9464, extraFiles)
}

function docker (args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()
}

/**
 * Everything under /app in the runtime image, node_modules only two levels deep (a package, or a scope's package).
 * Paths relative to /app.
 */
function imageFiles (image: string): string[] {
  const listing = docker(['run', '--rm', '--entrypoint', 'find', image, '/app', '-mindepth', '1',
    '-path', '/app/node_modules/*/*/*', '-prune', '-o', '-print'])
  return listing.split('\n').map((path) => path.slice('/app/'.length))
}

function checkImageContents (image: string) {
  const files = imageFiles(image)
  const topLevel = files.filter((path) => !path.includes('/')).sort()
  assert.deepEqual(topLevel, ['dist', 'node_modules', 'package-lock.json', 'package.json'], `/app holds: ${topLevel.join(', ')}`)
  const built = files.filter((path) => /^dist\/[^/]+$/.test(path)).sort()
  assert.deepEqual(built, ['dist/mock-services', 'dist/public', 'dist/src'], `/app/dist holds: ${built.join(', ')}`)
  const ours = files.filter((path) => !path.startsWith('node_modules/'))
  const strays = ours.filter((path) => /\.[cm]?tsx?$/.test(path) || /(^|\/)(bench|test|tests|fixtures|scripts)(\/|$)/.test(path))
  assert.deepEqual(strays, [], `the image holds sources or tools: ${strays.slice(0, 10).join(', ')}`)

  const packages = new Set(files.filter((path) => path.startsWith('node_modules/')).map((path) => path.slice('node_modules/'.length)))
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> }
  const devOnly = Object.entries(lock.packages)
    .filter(([path, entry]) => entry.dev === true && /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path))
    .map(([path]) => path.slice('node_modules/'.length))
  assert.ok(devOnly.length > 0, 'the lockfile lists no dev-only package: nothing to check')
  const devInImage = devOnly.filter((name) => packages.has(name))
  assert.deepEqual(devInImage, [], `dev-only packages in the image: ${devInImage.join(', ')}`)
  const dependencies = Object.keys((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies)
  const missing = dependencies.filter((name) => !packages.has(name))
  assert.deepEqual(missing, [], `production dependencies missing from the image: ${missing.join(', ')}`)
  return { entries: ours.length, devOnly: devOnly.length }
}

/**
 * Like AbortSignal.timeout, but with a timer that keeps the process alive: while docker-proxy holds a connection open,
 * an unref'd timer would leave the top-level await with nothing to wait on, and Node would exit with code 13.
 */
function timeoutSignal (ms: number): AbortSignal {
  const controller = new AbortController()
  setTimeout(() => controller.abort(new Error(`timed out after ${ms} ms`)), ms)
  return controller.signal
}

async function waitForReady (timeoutMs: number) {
  const giveUpAt = Date.now() + timeoutMs
  while (Date.now() < giveUpAt) {
    try {
      if ((await fetch(`${gateway}/ready`, { signal: timeoutSignal(2000) })).ok) return
    } catch {}
    await sleep(500)
  }
  throw new Error(`gateway not ready at ${gateway} after ${timeoutMs / 1000}s`)
}

async function getJson (path: string) {
  const startedAt = performance.now()
  const response = await fetch(`${gateway}${path}`, { signal: timeoutSignal(10_000) })
  const body = await response.json() as Record<string, any>
  return { status: response.status, headers: response.headers, body, ms: performance.now() - startedAt }
}

const checks: string[] = []
function ok (what: string) {
  checks.push(what)
  console.log(`ok ${checks.length} - ${what}`)
}

async function main () {
  console.log(`# ${[composeBinary, ...composePrefix].join(' ')}, project ${project}, GATEWAY_PUBLISH=${env.GATEWAY_PUBLISH}, GATEWAY_OBSERVABILITY_PUBLISH=${env.GATEWAY_OBSERVABILITY_PUBLISH}`)
  const startedAt = Date.now()
  compose(['build'], { quiet: true })
  const image = `${project}-runtime:local`
  ok(`the image builds, named after the project: ${image}`)

  const contents = checkImageContents(image)
  ok(`the image holds package.json, the lockfile, production node_modules (none of the ${contents.devOnly} dev-only packages) and dist/{src,mock-services,public}: no bench/, test/, scripts/ or .ts sources (${contents.entries} entries outside node_modules)`)

  compose(['up', '-d'])
  findPublishedPorts()
  await waitForReady(120_000)
  ok(`stack healthy: the gateway waited for five healthy mocks (${Math.round((Date.now() - startedAt) / 1000)}s from build)`)

  const containerId = compose(['ps', '-q', 'gateway'], { quiet: true }).stdout.trim()
  const inspect = JSON.parse(docker(['inspect', containerId]))[0]
  assert.equal(inspect.Config.Image, image, `the gateway runs ${inspect.Config.Image}`)
  for (const mock of ['profile', 'orders', 'recommendations', 'inventory', 'loyalty']) {
    const mockImage = docker(['inspect', '-f', '{{.Image}}', compose(['ps', '-q', mock], { quiet: true }).stdout.trim()])
    assert.equal(mockImage, inspect.Image, `${mock} runs ${mockImage}, the gateway ${inspect.Image}`)
  }
  ok('the gateway and the five mocks run that one image')
  assert.equal(inspect.Config.User, 'node')
  assert.ok(inspect.Config.Env.includes('NODE_ENV=production'))
  assert.deepEqual(inspect.Config.Cmd, ['node', 'dist/src/server.js'])
  ok('gateway runs as `node`, NODE_ENV=production, exec-form CMD')

  for (const [upstream, port] of [['orders', 4002], ['recommendations', 4003]] as const) {
    assert.equal(compose(['port', upstream, String(port)], { check: false, quiet: true }).stdout.trim(), '')
  }
  ok('mock upstreams are not published on the host')

  const complete = await getJson('/aggregate/user-42')
  assert.equal(complete.status, 200)
  assert.equal(complete.headers.get('x-aggregate-complete'), 'true')
  assert.equal(complete.body.profile.id, 'user-42')
  assert.ok(complete.body.recommendations.length > 0)
  ok(`complete aggregate through ${gateway} (${Math.round(complete.ms)} ms)`)

  setMock('recommendations', 4003, { mode: 'hang' })
  const partial = await getJson('/aggregate/user-42')
  assert.equal(partial.status, 200)
  assert.equal(partial.headers.get('x-aggregate-complete'), 'false')
  assert.deepEqual(partial.body.meta.upstreams.recommendations, { ...partial.body.meta.upstreams.recommendations, status: 'timeout' })
  assert.ok(partial.ms < 1500, `partial answer took ${partial.ms} ms`)
  ok(`partial aggregate within the deadline while recommendations hangs (${Math.round(partial.ms)} ms, fallback ${partial.body.meta.upstreams.recommendations.fallback})`)
  setMock('recommendations', 4003, { mode: 'normal' })

  const metrics = await fetch(`${observability}/metrics`, { signal: timeoutSignal(10_000) })
  assert.equal(metrics.status, 200)
  const metricsText = await metrics.text()
  assert.match(metricsText, /^aggregate_upstream_call_duration_seconds_count\{upstream="recommendations",outcome="timeout"\} [1-9]/m)
  assert.equal((await fetch(`${gateway}/metrics`, { signal: timeoutSignal(10_000) })).status, 404)
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: metricsText, encoding: 'utf8' })
  if (promtool.error === undefined) assert.equal(promtool.status, 0, promtool.stdout + promtool.stderr)
  assert.equal((await fetch(`${observability}/dashboard`, { signal: timeoutSignal(10_000) })).status, 200)
  ok(`metrics and dashboard on ${observability}, not on the public port${promtool.error === undefined ? '; promtool check metrics passes' : ''}`)

  compose(['--profile', 'observability', 'config', '-q'], { quiet: true })
  ok('the observability profile (Prometheus + Grafana) is a valid compose configuration')

  const bad = await getJson('/aggregate/..%2Fetc')
  assert.equal(bad.status, 400)
  assert.equal(bad.body.code, 'AGG_ERR_BAD_REQUEST')
  ok('a bad id gets a JSON 400')

  const load = compose(['--profile', 'loadtest', 'run', '--rm', 'loadtest', '--connections', '10', '--duration', '3', 'http://gateway:3000/aggregate/user-7'], { quiet: true })
  assert.match(load.stdout + load.stderr, /requests in/)
  ok('the loadtest profile runs autocannon against the gateway inside the network')

  await checkDistributedBatches()

  // Drain: recreate the gateway with long budgets so a request is surely in flight when SIGTERM arrives.
  const drain = ['-f', 'test/e2e/compose/docker-compose.drain.yml']
  compose(['up', '-d', '--no-deps', 'gateway'], { files: drain })
  findPublishedPorts(drain)
  await waitForReady(60_000)
  // 4.5 s of a 5 s timeout: a wide window for the (slow, docker exec) stats poll to see the call in flight on a busy host.
  setMock('orders', 4002, { latencyMs: 4500 })
  const inFlight = getJson('/aggregate/user-9')
  const giveUpAt = Date.now() + 10_000
  while (mockStats('orders', 4002).inFlight === 0) {
    if (Date.now() > giveUpAt) throw new Error('the request never reached the orders mock')
    await sleep(100)
  }
  const drainedId = compose(['ps', '-q', 'gateway'], { files: drain, quiet: true }).stdout.trim()
  compose(['stop', '-t', '20', 'gateway'], { files: drain, quiet: true })
  const drained = await inFlight
  assert.equal(drained.status, 200)
  assert.equal(drained.body.meta.complete, true)
  const exitCode = docker(['inspect', '-f', '{{.State.ExitCode}}', drainedId])
  assert.equal(exitCode, '0')
  ok('SIGTERM (docker compose stop/down) lets the in-flight request finish with 200, and the gateway exits 0')
}

/**
 * The profile "distributed": Redis built from Debian's package, two batch workers (--scale), and the gateway pointed at
 * them and taking no items itself, so every item of the batch runs in a worker container.
 */
async function checkDistributedBatches () {
  const startedAt = Date.now()
  const variables = { BATCH_REDIS_URL: 'redis://redis:6379', BATCH_GATEWAY_TAKES_ITEMS: 'false' }
  compose(['--profile', 'distributed', 'up', '-d', '--build', '--scale', 'batch-worker=2'], { variables, quiet: true })
  findPublishedPorts()
  await waitForReady(120_000)
  const workers = compose(['--profile', 'distributed', 'ps', '-q', 'batch-worker'], { quiet: true }).stdout.trim().split('\n').filter((line) => line !== '')
  assert.equal(workers.length, 2, `batch-worker containers: ${workers.length}`)
  assert.equal(compose(['port', 'redis', '6379'], { check: false, quiet: true }).stdout.trim(), '', 'Redis is published on the host')

  const userIds = Array.from({ length: 300 }, (_, index) => `compose-user-${index}`)
  const created = await fetch(`${gateway}/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userIds }), signal: timeoutSignal(30_000) })
  const createdBody = await created.json() as Record<string, any>
  assert.equal(created.status, 202, JSON.stringify(createdBody))
  let view: Record<string, any> = {}
  const giveUpAt = Date.now() + 120_000
  do {
    await sleep(250)
    view = (await getJson(`/batches/${createdBody.id}`)).body
    if (Date.now() > giveUpAt) throw new Error(`the distributed batch did not end in time: ${JSON.stringify(view)}`)
  } while (view.status === 'queued' || view.status === 'running')
  assert.equal(view.status, 'completed', JSON.stringify(view))
  assert.equal(view.done, 300, JSON.stringify(view))
  const text = await (await fetch(`${gateway}/batches/${createdBody.id}/results`, { signal: timeoutSignal(30_000) })).text()
  const indexes = text.split('\n').filter((line) => line !== '').map((line) => (JSON.parse(line) as { index: number }).index)
  assert.equal(new Set(indexes).size, 300, `${indexes.length} lines, ${new Set(indexes).size} distinct indexes`)
  assert.equal(indexes.length, 300)
  ok(`the distributed profile: Redis (from Debian's package, not published) and two batch workers (--scale) ran a batch of 300 users through a gateway that takes no items: completed, each of the 300 lines once (${Math.round((Date.now() - startedAt) / 1000)}s with the Redis build)`)
}

function tearDown () {
  // --rmi all: the images are this run's own (named after the project), so they go with it.
  compose(['--profile', 'loadtest', '--profile', 'distributed', 'down', '-v', '--remove-orphans', '--rmi', 'all', '--timeout', '20'],
    { files: ['-f', 'test/e2e/compose/docker-compose.drain.yml'], check: false, quiet: true })
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`# ${signal}: removing the stack`)
    tearDown()
    process.exit(1)
  })
}

let failed = false
try {
  await main()
} catch (error) {
  failed = true
  console.error(`not ok - ${(error as Error).message}`)
  const logs = compose(['logs', '--no-color', '--tail', '40', 'gateway'], { check: false, quiet: true })
  console.error(logs.stdout)
} finally {
  tearDown()
  console.log(`# ${checks.length} checks passed${failed ? ', then a failure' : ''}; stack removed`)
}
process.exit(failed ? 1 : 0)
