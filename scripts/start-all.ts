import { spawn, type ChildProcess } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { registry, upstreamVariable } from '../src/lib/contract/upstreams.js'
import { waitUntilHealthy } from './wait-until-healthy.js'

// `npm start`: the five mock upstreams and the gateway, each its own process, started in order and stopped together.
// MOCK_* variables apply to every mock; every gateway variable (PORT, AGGREGATE_DEADLINE_MS, ...) passes through.

const here = dirname(fileURLToPath(import.meta.url))
const MOCK_MAIN = join(here, '../mock-services/main.js')
const GATEWAY_MAIN = join(here, '../src/server.js')
const STARTUP_TIMEOUT_MS = 15_000
const portOf = (name: string) => registry.upstreams.find((upstream) => upstream.name === name)?.defaults.port
// Different latencies per upstream make the overlap visible: the response takes about as long as the slowest one.
const DEMO_LATENCY_MS: Record<string, number> = { profile: 20, orders: 60, recommendations: 90, inventory: 40, loyalty: 30 }

const children: ChildProcess[] = []
let stopping = false

function start (label: string, script: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  // Own process group: a terminal's Ctrl-C reaches only this launcher, which sends each child exactly one SIGTERM.
  // (A child that got both would take the second signal as "exit now" and drop its in-flight requests.)
  const child = spawn(process.execPath, [script, ...args], { env, stdio: ['ignore', 'inherit', 'inherit'], detached: true })
  child.on('exit', (code, signal) => {
    if (stopping) return
    console.error(`${label} exited unexpectedly (${signal ?? `code ${code}`}); stopping everything`)
    stop(1)
  })
  children.push(child)
  return child
}

function stop (exitCode: number): void {
  if (stopping) return
  stopping = true
  const running = children.filter((child) => child.exitCode === null && child.signalCode === null)
  let remaining = running.length
  if (remaining === 0) process.exit(exitCode)
  for (const child of running) {
    child.once('exit', () => { if (--remaining === 0) process.exit(exitCode) })
    child.kill('SIGTERM')
  }
  // Children have their own shutdown deadlines; this only guards against one that ignores SIGTERM.
  setTimeout(() => process.exit(exitCode || 1), 15_000).unref()
}

process.on('SIGINT', () => stop(0))
process.on('SIGTERM', () => stop(0))
// Should the launcher die some other way, its children must not outlive it.
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
})

try {
  const gatewayEnv: NodeJS.ProcessEnv = { ...process.env }
  for (const { name, defaults: { port } } of registry.upstreams) {
    start(`mock ${name}`, MOCK_MAIN, [name], {
      ...process.env,
      MOCK_PORT: String(port),
      MOCK_LATENCY_MS: process.env.MOCK_LATENCY_MS ?? String(DEMO_LATENCY_MS[name]),
      MOCK_JITTER_MS: process.env.MOCK_JITTER_MS ?? '10'
    })
    gatewayEnv[upstreamVariable(name, 'URL')] ??= `http://127.0.0.1:${port}`
  }
  await Promise.all(registry.upstreams.map(({ defaults: { port } }) => waitUntilHealthy(`http://127.0.0.1:${port}/health`, { timeoutMs: STARTUP_TIMEOUT_MS, stillWorthIt: () => !stopping })))

  start('gateway', GATEWAY_MAIN, [], gatewayEnv)
  const host = process.env.HOST && process.env.HOST !== '0.0.0.0' ? process.env.HOST : '127.0.0.1'
  const gateway = `http://${host}:${process.env.PORT ?? 3000}`
  await waitUntilHealthy(`${gateway}/ready`, { timeoutMs: STARTUP_TIMEOUT_MS, stillWorthIt: () => !stopping })
  if (!stopping) {
    console.log([
      '',
      `  Gateway     ${gateway}   (health: ${gateway}/health, readiness: ${gateway}/ready)`,
      `  Dashboard   http://127.0.0.1:${process.env.OBSERVABILITY_PORT ?? 9464}/dashboard   (metrics: /metrics on the same port)`,
      ...registry.upstreams.map(({ name, defaults: { port } }) => `  Mock ${name.padEnd(16)} http://127.0.0.1:${port}`),
      '',
      '  Try it:',
      `    curl -s ${gateway}/aggregate/user-42`,
      '  Make recommendations hang, and see a partial response within the deadline:',
      `    curl -s -X PUT -H 'content-type: application/json' -d '{"mode":"hang"}' http://127.0.0.1:${portOf('recommendations')}/__control`,
      `    curl -s -X DELETE http://127.0.0.1:${portOf('recommendations')}/__control`,
      '',
      '  Ctrl-C stops everything.',
      ''
    ].join('\n'))
  }
} catch (error) {
  console.error((error as Error).message)
  stop(1)
}
