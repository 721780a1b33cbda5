import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { afterAll, bench, describe } from 'vitest'
import { guardedConnect } from '../../src/clients/response-header-guard.js'
import { cpuClock } from '../helpers/bench-clocks.js'

// The client's CPU per response when an upstream answers with 10,000 headers, with undici's defaults, other
// maxHeaderSize values and the response-head guard; and per normal response, which the guard must leave alone.
// The upstream is the profile mock in header-flood mode for users starting with "flood-", in its own process, so the
// CPU clock counts only the client. `npm run bench:unit`, or
// `npx vitest bench --run test/clients/response-header-guard.bench.ts`.

const OPTIONS = { now: cpuClock, time: 500, warmupTime: 200 }

const mock = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../../mock-services/main.ts', import.meta.url)), 'profile'], {
  env: { ...process.env, MOCK_PORT: '0', MOCK_LATENCY_MS: '0', MOCK_JITTER_MS: '0', MOCK_MODE: 'header-flood', MOCK_MODE_USER_PREFIX: 'flood-' },
  stdio: ['ignore', 'pipe', 'inherit']
})
const [line] = await once(mock.stdout!, 'data') as [Buffer]
const origin = (JSON.parse(line.toString()) as { url: string }).url

const SETUPS: Record<string, Pool.Options> = {
  'undici default (maxHeaderSize 16 KiB)': {},
  'maxHeaderSize 4 KiB': { maxHeaderSize: 4 * 1024 },
  'maxHeaderSize 1 MiB (no overflow)': { maxHeaderSize: 1024 * 1024 },
  'guardedConnect (16 KiB head)': { connect: guardedConnect() }
}
const pools = Object.fromEntries(Object.entries(SETUPS).map(([name, options]) => [name, new Pool(origin, { connections: 1, pipelining: 1, ...options })]))

afterAll(async () => {
  await Promise.all(Object.values(pools).map((pool) => pool.close()))
  mock.kill()
})

/** One GET, its body read or its failure caught: a refused flood is the outcome being timed, not an error. */
async function get (pool: Pool, path: string): Promise<string> {
  try {
    const { statusCode, body } = await pool.request({ method: 'GET', path })
    await body.dump()
    return `HTTP ${statusCode}`
  } catch (error) {
    return (error as { code?: string }).code ?? String(error)
  }
}

for (const [path, what] of [['/users/flood-1', '10,000-header response'], ['/users/user-1', 'normal response']] as const) {
  // Each bench is named with its outcome (HTTP 200, or the code it failed with), seen once before timing.
  const outcomes = await Promise.all(Object.values(pools).map((pool) => get(pool, path)))
  describe(`${what}: client CPU ms per response`, () => {
    for (const [index, [name, pool]] of Object.entries(pools).entries()) {
      bench(`${name}: ${outcomes[index]}`, async () => { await get(pool, path) }, OPTIONS)
    }
  })
}
