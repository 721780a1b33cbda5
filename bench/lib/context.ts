import { setTimeout as sleep } from 'node:timers/promises'
import type { MockSettings } from '../../mock-services/settings.js'
import { UPSTREAM_NAMES, upstreamVariable, type BuiltInUpstream as UpstreamName } from '../../src/lib/contract/upstreams.js'
import type { BarChart } from './charts.js'
import { SCRIPTS, startService, type Service } from './processes.js'

// What every scenario gets: the mocks (their own processes, controlled through /__control like any user would),
// helpers to start gateways and baselines as processes, and the round settings of this run.

export const BENCH_PORTS = { mocks: 4101, a: 3100, b: 3101, c: 3102 } as const
/** Each gateway's /metrics is on its own observability port: this offset from its public port (3100 → 9500). */
const OBSERVABILITY_PORT_OFFSET = 6400

/** A gateway process: its public origin, plus the separate origin of its /metrics (OBSERVABILITY_PORT). */
export interface Gateway extends Service {
  readonly metricsOrigin: string
}

export interface ScenarioResult {
  id: string
  title: string
  /** One sentence: what the result shows about concurrency or parallelism. */
  finding: string
  /** How the scenario was run: load, upstream settings, variants. */
  setup: string
  table: { headers: string[], rows: string[][] }
  chart: BarChart
  data: unknown
}

export interface Mocks {
  readonly services: Service[]
  /** Applies settings to every mock, then per-upstream overrides; resets their counters. */
  configure (all: Partial<MockSettings>, overrides?: Partial<Record<UpstreamName, Partial<MockSettings>>>): Promise<void>
  stats (name: UpstreamName): Promise<{ requests: number, maxInFlight: number, inFlight: number, aborted: number }>
  resetStats (): Promise<void>
}

export interface BenchContext {
  quick: boolean
  rounds: number
  durationSeconds: number
  mocks: Mocks
  log (message: string): void
  upstreamEnv (): Record<string, string>
  /** Starts a gateway on `port`, its /metrics on `port + 6400` (OBSERVABILITY_PORT, always passed explicitly). */
  startGateway (port: number, env?: Record<string, string>): Promise<Gateway>
  startBaseline (script: 'serialBaseline' | 'naiveBaseline' | 'bareFastify' | 'floorBaseline', port: number): Promise<Service>
}

const mockOrigin = (name: UpstreamName) => `http://127.0.0.1:${BENCH_PORTS.mocks + UPSTREAM_NAMES.indexOf(name)}`

export async function startMocks (): Promise<Mocks> {
  const services = await Promise.all(UPSTREAM_NAMES.map((name) => startService(
    `mock ${name}`, SCRIPTS.mock, [name], { MOCK_PORT: String(BENCH_PORTS.mocks + UPSTREAM_NAMES.indexOf(name)) }, mockOrigin(name)
  )))
  async function put (name: UpstreamName, settings: Partial<MockSettings>) {
    const response = await fetch(`${mockOrigin(name)}/__control`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(settings) })
    if (!response.ok) throw new Error(`mock ${name}: ${await response.text()}`)
  }
  return {
    services,
    async configure (all, overrides = {}) {
      for (const name of UPSTREAM_NAMES) {
        await fetch(`${mockOrigin(name)}/__control`, { method: 'DELETE' })
        await put(name, { ...all, ...overrides[name] })
        await fetch(`${mockOrigin(name)}/__stats`, { method: 'DELETE' })
      }
    },
    async stats (name) {
      return await (await fetch(`${mockOrigin(name)}/__stats`)).json() as Awaited<ReturnType<Mocks['stats']>>
    },
    async resetStats () {
      await Promise.all(UPSTREAM_NAMES.map((name) => fetch(`${mockOrigin(name)}/__stats`, { method: 'DELETE' })))
    }
  }
}

export function createContext (mocks: Mocks, { quick }: { quick: boolean }): BenchContext {
  const upstreamEnv = () => Object.fromEntries(UPSTREAM_NAMES.map((name) => [upstreamVariable(name, 'URL'), mockOrigin(name)]))
  return {
    quick,
    rounds: quick ? 1 : 3,
    durationSeconds: quick ? 2 : 8,
    mocks,
    log: (message) => console.log(`  ${message}`),
    upstreamEnv,
    async startGateway (port, env = {}) {
      const observabilityPort = port + OBSERVABILITY_PORT_OFFSET
      const service = await startService(`gateway :${port}`, SCRIPTS.gateway, [], {
        ...upstreamEnv(), PORT: String(port), OBSERVABILITY_PORT: String(observabilityPort), ...env
      }, `http://127.0.0.1:${port}`)
      return { ...service, metricsOrigin: `http://127.0.0.1:${observabilityPort}` }
    },
    startBaseline: (script, port) => startService(`${script} :${port}`, SCRIPTS[script], [], { ...upstreamEnv(), PORT: String(port) }, `http://127.0.0.1:${port}`)
  }
}

/**
 * Measures each variant `rounds` times, alternating, in ABBA order from round to round so a slow drift of the machine
 * weighs on both alike. Returns each variant's per-round results.
 */
export async function alternate<T> (rounds: number, variants: Array<{ name: string, measure: () => Promise<T> }>): Promise<Record<string, T[]>> {
  const results: Record<string, T[]> = Object.fromEntries(variants.map((variant) => [variant.name, []]))
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse()
    for (const variant of order) {
      results[variant.name]!.push(await variant.measure())
      // A moment for sockets to close and timers to settle before the next measurement.
      await sleep(300)
    }
  }
  return results
}
