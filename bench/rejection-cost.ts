import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import { UPSTREAM_NAMES, upstreamVariable } from '../src/lib/contract/upstreams.js'
import { SCRIPTS, startService, type Service } from './lib/processes.js'

// CPU per rejected request: `npm run build && node dist/bench/rejection-cost.js`. A gateway whose admission limit
// is one, held by a request to a hanging upstream, answers every other aggregate with admission's 503; its process's
// CPU over a closed-loop flood of them, divided by their number, is the cost of one rejection. The floor is a bare
// node:http server answering the same 503, in its own process too. Alternating rounds; medians.

const PORTS = { mocks: 4301, gateway: 3310, floor: 3311, observability: 9610 }
const ROUNDS = 5
const SECONDS = 4

async function flood (origin: string, path: string): Promise<number> {
  const result = await autocannon({ url: `${origin}${path}`, connections: 32, duration: SECONDS })
  return result.non2xx + result['2xx']
}

async function measure (service: Service, path: string): Promise<number> {
  const before = service.cpuSeconds()!
  const count = await flood(service.origin, path)
  return ((service.cpuSeconds()! - before) / count) * 1e6
}

const mocks = await Promise.all(UPSTREAM_NAMES.map((name, index) => startService(`mock ${name}`, SCRIPTS.mock, [name], { MOCK_PORT: String(PORTS.mocks + index), MOCK_MODE: 'hang' }, `http://127.0.0.1:${PORTS.mocks + index}`)))
const gateway = await startService('gateway', SCRIPTS.gateway, [], {
  ...Object.fromEntries(UPSTREAM_NAMES.map((name, index) => [upstreamVariable(name, 'URL'), `http://127.0.0.1:${PORTS.mocks + index}`])),
  PORT: String(PORTS.gateway),
  OBSERVABILITY_PORT: String(PORTS.observability),
  ADMISSION_INITIAL_LIMIT: '1',
  ADMISSION_MIN_LIMIT: '1',
  ADMISSION_MAX_LIMIT: '1',
  ADMISSION_MAX_QUEUE: '0',
  AGGREGATE_DEADLINE_MS: '60000',
  ...Object.fromEntries(UPSTREAM_NAMES.map((name) => [upstreamVariable(name, 'TIMEOUT_MS'), '60000']))
}, `http://127.0.0.1:${PORTS.gateway}`)
const floor = await startService('floor', fileURLToPath(new URL('./baselines/rejection-floor.js', import.meta.url)), [], { PORT: String(PORTS.floor) }, `http://127.0.0.1:${PORTS.floor}`)
try {
  // The one slot, held for the whole run by a request the hanging upstreams never answer.
  fetch(`${gateway.origin}/aggregate/holder`).catch(() => {})
  await sleep(300)
  const results: Record<'gateway' | 'floor', number[]> = { gateway: [], floor: [] }
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (['gateway', 'floor'] as const) : (['floor', 'gateway'] as const)
    for (const which of order) results[which].push(await measure(which === 'gateway' ? gateway : floor, '/aggregate/user-1'))
  }
  const median = (values: number[]) => [...values].sort((left, right) => left - right)[Math.floor(values.length / 2)]!
  const gatewayUs = median(results.gateway)
  const floorUs = median(results.floor)
  console.log(`CPU per rejected aggregate: gateway ${gatewayUs.toFixed(1)} µs (${results.gateway.map((value) => value.toFixed(1)).join(', ')}), bare node:http 503 ${floorUs.toFixed(1)} µs (${results.floor.map((value) => value.toFixed(1)).join(', ')}); gateway − floor ${(gatewayUs - floorUs).toFixed(1)} µs`)
} finally {
  await floor.stop()
  await gateway.stop()
  await Promise.all(mocks.map((mock) => mock.stop()))
}
