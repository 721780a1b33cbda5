import { fork } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'
import { guardedConnect } from '../src/clients/response-header-guard.js'

// Main-thread CPU per response when an upstream answers with 10,000 headers, with undici's defaults, other
// maxHeaderSize values, and the response-head guard.  npx tsx bench/header-flood.ts
// The server runs in a child process so process.cpuUsage() counts only the client. Rounds alternate the setups;
// the table shows the median over rounds of the CPU per response.

const HEADER_COUNT = 10_000
const ROUNDS = 5
const REQUESTS_PER_ROUND = 20

if (process.argv[2] === 'server') {
  const flood = Array.from({ length: HEADER_COUNT }, (_, index) => [`x-flood-${index}`, '1']).flat()
  const server = createServer((request, response) => {
    const body = '{"ok":true}'
    const headers = request.url === '/flood' ? flood : ['x-upstream', 'normal']
    response.writeHead(200, ['content-type', 'application/json', 'content-length', String(body.length), ...headers])
    response.end(body)
  })
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as AddressInfo).port))
} else {
  const child = fork(process.argv[1]!, ['server'], { execArgv: process.execArgv })
  const port = await new Promise<number>((resolve) => child.once('message', (message) => resolve(message as number)))
  const origin = `http://127.0.0.1:${port}`
  const setups: Record<string, Pool.Options> = {
    'undici default (maxHeaderSize 16 KiB)': {},
    'maxHeaderSize 4 KiB': { maxHeaderSize: 4 * 1024 },
    'maxHeaderSize 1 MiB (no overflow)': { maxHeaderSize: 1024 * 1024 },
    'guardedConnect (16 KiB head)': { connect: guardedConnect() }
  }
  const samples: Record<string, Record<string, number[]>> = {}
  const outcomes: Record<string, Record<string, string>> = {}
  for (let round = 0; round < ROUNDS; round++) {
    const names = round % 2 === 0 ? Object.keys(setups) : Object.keys(setups).reverse()
    for (const name of names) {
      const pool = new Pool(origin, { connections: 1, pipelining: 1, ...setups[name] })
      for (const path of ['/flood', '/normal']) {
        const start = process.cpuUsage()
        let outcome = ''
        for (let index = 0; index < REQUESTS_PER_ROUND; index++) {
          try {
            const { statusCode, body } = await pool.request({ method: 'GET', path })
            await body.dump()
            outcome = `HTTP ${statusCode}`
          } catch (error) {
            outcome = (error as { code?: string }).code ?? String(error)
          }
        }
        const used = process.cpuUsage(start)
        ;((samples[name] ??= {})[path] ??= []).push((used.user + used.system) / 1000 / REQUESTS_PER_ROUND)
        ;(outcomes[name] ??= {})[path] = outcome
      }
      await pool.close()
    }
  }
  const median = (values: number[] = []) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN
  console.log(`header flood bench: node ${process.version}, ${HEADER_COUNT} headers, ${ROUNDS} rounds x ${REQUESTS_PER_ROUND} requests, client CPU ms per response (median of rounds)\n`)
  console.log('| setup | flood ms | flood outcome | normal ms | normal outcome |')
  console.log('|---|---|---|---|---|')
  for (const name of Object.keys(setups)) {
    const times = samples[name]!
    console.log(`| ${name} | ${median(times['/flood']).toFixed(2)} | ${outcomes[name]!['/flood']} | ${median(times['/normal']).toFixed(2)} | ${outcomes[name]!['/normal']} |`)
  }
  child.kill()
}
