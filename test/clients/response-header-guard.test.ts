import { createServer, type Server } from 'node:http'
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net'
import { Pool } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { guardedConnect } from '../../src/clients/response-header-guard.js'

const FLOOD = Array.from({ length: 10_000 }, (_, index) => [`x-flood-${index}`, '1']).flat()

let server: Server
let origin: string
let connections = 0
const pools: Pool[] = []

beforeAll(async () => {
  server = createServer((request, response) => {
    const body = JSON.stringify({ path: request.url })
    if (request.url?.startsWith('/early-hints')) response.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' })
    const headers = request.url === '/flood' || request.url === '/early-hints-then-flood' ? FLOOD : ['x-upstream', 'normal']
    response.writeHead(200, ['content-type', 'application/json', 'content-length', String(body.length), ...headers])
    response.end(body)
  })
  server.on('connection', () => { connections++ })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterEach(async () => { await Promise.all(pools.splice(0).map((pool) => pool.close())) })
afterAll(async () => { await new Promise((resolve) => server.close(resolve)) })

function guardedPool (url = origin, maxHeadBytes?: number) {
  const pool = new Pool(url, { connections: 1, pipelining: 1, connect: guardedConnect({ maxHeadBytes, connector: { timeout: 1000 } }) })
  pools.push(pool)
  return pool
}

async function get (pool: Pool, path: string) {
  const { statusCode, headers, body } = await pool.request({ method: 'GET', path })
  return { statusCode, headers, body: await body.text() }
}

async function failure (promise: Promise<unknown>): Promise<{ code?: string, message?: string }> {
  try {
    const value = await promise
    throw new Error(`expected a failure, got ${JSON.stringify(value).slice(0, 200)}`)
  } catch (error) {
    return error as { code?: string, message?: string }
  }
}

describe('guardedConnect', () => {
  it('passes a normal response, headers and body intact', async () => {
    const response = await get(guardedPool(), '/normal')
    expect(response).toMatchObject({ statusCode: 200, body: '{"path":"/normal"}' })
    expect(response.headers['x-upstream']).toBe('normal')
  })

  it('fails a response with 10,000 headers with a clear code, and the pool stays usable', async () => {
    const pool = guardedPool()
    const error = await failure(get(pool, '/flood'))
    expect(error.code, `got ${error.message}`).toBe('ERR_UPSTREAM_RESPONSE_HEAD_TOO_LARGE')
    expect(error.message).toBe('upstream response head exceeds 16384 bytes')
    expect(await get(pool, '/after')).toMatchObject({ statusCode: 200, body: '{"path":"/after"}' })
  })

  it('checks every response on a kept-alive connection, not only the first', async () => {
    const pool = guardedPool()
    const before = connections
    for (const path of ['/one', '/two', '/three']) expect((await get(pool, path)).body).toBe(`{"path":"${path}"}`)
    expect(connections - before).toBe(1)
    expect((await failure(get(pool, '/flood'))).code).toBe('ERR_UPSTREAM_RESPONSE_HEAD_TOO_LARGE')
    expect(await get(pool, '/four')).toMatchObject({ statusCode: 200, body: '{"path":"/four"}' })
  })

  it('looks past a 1xx head to the real one', async () => {
    const pool = guardedPool()
    expect(await get(pool, '/early-hints')).toMatchObject({ statusCode: 200, body: '{"path":"/early-hints"}' })
    expect((await failure(get(pool, '/early-hints-then-flood'))).code).toBe('ERR_UPSTREAM_RESPONSE_HEAD_TOO_LARGE')
  })

  it('honours a custom bound', async () => {
    const error = await failure(get(guardedPool(origin, 100), '/normal'))
    expect(error.code, `got ${error.message}`).toBe('ERR_UPSTREAM_RESPONSE_HEAD_TOO_LARGE')
    expect(error.message).toBe('upstream response head exceeds 100 bytes')
  })

  describe('against a server that splits its head into small writes', () => {
    let tcp: TcpServer
    let tcpOrigin: string
    let chunkBytes = 1

    beforeAll(async () => {
      tcp = createTcpServer((socket: Socket) => {
        socket.on('data', async () => {
          const body = '{"split":true}'
          const head = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`
          const bytes = Buffer.from(head + body)
          // A 71-byte head in small writes with pauses, so the client sees `\r\n\r\n` straddle chunks; with the body, 85.
          for (let offset = 0; offset < bytes.length; offset += chunkBytes) {
            socket.write(bytes.subarray(offset, offset + chunkBytes))
            await new Promise((resolve) => setImmediate(resolve))
          }
        })
      })
      await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve))
      tcpOrigin = `http://127.0.0.1:${(tcp.address() as AddressInfo).port}`
    })
    afterAll(async () => { await new Promise((resolve) => tcp.close(resolve)) })

    for (const size of [1, 2, 3, 5]) {
      it(`finds the end of the head in chunks of ${size} bytes`, async () => {
        chunkBytes = size
        const pool = guardedPool(tcpOrigin, 75)
        expect(await get(pool, '/')).toMatchObject({ statusCode: 200, body: '{"split":true}' })
        expect(await get(pool, '/')).toMatchObject({ statusCode: 200, body: '{"split":true}' })
      })
    }
  })
})
