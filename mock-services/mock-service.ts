import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { LRUCache } from 'lru-cache'
import { hashString, seededRandom } from '../src/lib/contract/seeded-random.js'
import { registry, type UpstreamDeclaration } from '../src/lib/contract/upstreams.js'
import { BODY_GENERATORS, BODY_SERIALIZERS } from './data.js'
import { BUILT_IN_DEFAULTS, updateSettings, type MockSettings } from './settings.js'

export interface MockStats {
  requests: number
  inFlight: number
  maxInFlight: number
  /** Requests whose client went away before the answer was complete. */
  aborted: number
  completed: number
  /** Connections the mock destroyed itself (`reset` mode). */
  resets: number
  /** Requests that waited tailLatencyMs instead of latencyMs (counted when drawn; such a request may still abort). */
  tail: number
  lastRequestId: string | null
  lastDeadlineMs: number | null
}

/** What a mock serves: an upstream's declaration (its path), and the body it answers for a user at a payload scale. */
export interface MockUpstream {
  readonly declaration: Pick<UpstreamDeclaration, 'name' | 'path' | 'required'>
  readonly generate: (userId: string, scale: number) => unknown
  /** The body's JSON text, when there is a faster way to it than JSON.stringify of `generate`'s value. */
  readonly serialize?: (userId: string, scale: number) => string
}

/** A built-in upstream, by name: its declaration in the registry and its data in mock-services/data.ts. */
export function builtInMock (name: string): MockUpstream {
  const declaration = registry.upstreams.find((upstream) => upstream.name === name)
  const generate = BODY_GENERATORS[name]
  if (!declaration || !generate) throw new Error(`no built-in upstream named ${JSON.stringify(name)}`)
  return { declaration, generate, serialize: BODY_SERIALIZERS[name] }
}

/** The path template's pattern: `/users/{userId}/orders` matches `/users/<id>/orders`, capturing the id. */
const resourcePattern = (path: string) => new RegExp(`^${path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace('{userId}', '([^/]+)')}$`)

export interface MockService {
  readonly name: string
  readonly server: Server
  listen (port?: number, host?: string): Promise<string>
  close (): Promise<void>
}

const MAX_CONTROL_BODY_BYTES = 16 * 1024
// slow-body mode: this many bytes every interval, so any sensible timeout fires first.
const TRICKLE_BYTES = 64
const TRICKLE_INTERVAL_MS = 100
// header-flood mode: enough headers to blow any sane client header limit many times over.
const FLOOD_HEADER_COUNT = 10_000
// overflow mode: finite in JSON, Infinity as soon as two of them are added or one is multiplied by a quantity.
const HUGE = 1e308
const OVERFLOWING_FIELDS = new Set(['price', 'unitPrice', 'total', 'popularity', 'points', 'delta', 'threshold', 'available'])

/** `[[],[],...,[]]` of about `bytes` bytes: valid JSON, cheap to send, costly to parse into millions of arrays. */
export function nestedArraysBody (bytes: number): Buffer {
  const count = Math.max(1, Math.floor((bytes - 2 + 1) / 3))
  return Buffer.from(`[${'[],'.repeat(count - 1)}[]]`)
}

/** The same body with every amount replaced by a number that overflows in arithmetic; the shape stays valid. */
export function overflowingBody (value: unknown, key?: string): unknown {
  if (Array.isArray(value)) {
    return key === 'features' ? value.map(() => HUGE) : value.map((item) => overflowingBody(item))
  }
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([field, inner]) => [field, overflowingBody(inner, field)]))
  }
  if (typeof value === 'number' && key !== undefined) {
    if (key === 'quantity') return 10
    // Keeps the sign: sums of earned and spent points end as Infinity, -Infinity or NaN, never as a number.
    if (OVERFLOWING_FIELDS.has(key)) return value < 0 ? -HUGE : HUGE
  }
  return value
}

function floodHeaders (): string[] {
  const raw: string[] = []
  for (let index = 0; index < FLOOD_HEADER_COUNT; index++) raw.push(`x-flood-${index}`, '1')
  return raw
}

const emptyStats = (inFlight = 0): MockStats => ({
  requests: 0, inFlight, maxInFlight: inFlight, aborted: 0, completed: 0, resets: 0, tail: 0, lastRequestId: null, lastDeadlineMs: null
})

function sendJson (response: ServerResponse, status: number, body: unknown, extraHeaders: Record<string, string> = {}) {
  const payload = JSON.stringify(body)
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...extraHeaders })
  response.end(payload)
}

function readBody (request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_CONTROL_BODY_BYTES) {
        reject(new Error('body too large'))
        request.destroy()
      } else {
        chunks.push(chunk)
      }
    })
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    request.on('error', reject)
  })
}

/**
 * One mock upstream: a real HTTP server that serves `name`'s resource with deterministic data and can be told, through
 * `/__control`, to be slow, flaky, hang, send broken JSON, trickle its body or reset the connection, or to be hostile:
 * a huge body of nested arrays (`nested`), amounts that overflow in arithmetic (`overflow`), or 10,000 response
 * headers (`header-flood`). With `modeUserPrefix`, the fault mode and failureRate hit only the users whose id starts
 * with it, so hostile and normal callers can share one mock. With `tailRate`, that share of requests waits
 * `tailLatencyMs` instead of `latencyMs`: a long latency tail, for every user.
 */
export function createMockService (upstream: string | MockUpstream, defaults: MockSettings = BUILT_IN_DEFAULTS): MockService {
  const { declaration, generate, serialize } = typeof upstream === 'string' ? builtInMock(upstream) : upstream
  const { name } = declaration
  const resourcePath = resourcePattern(declaration.path)
  let settings = { ...defaults }
  let stats = emptyStats()
  // Which requests are in the tail: a seeded sequence, restarted whenever the settings change, so a run that sets them
  // and then sends the same requests gets the same tail. Seeded by name: the five mocks do not all tail on the same call.
  const tailSeed = hashString(`tail:${name}`)
  let tailRandom = seededRandom(tailSeed)
  // Generating a 10x body costs milliseconds; the mock should measure the gateway, not itself. Only bodies above the
  // normal payload scale are kept (a normal one costs less to make than to keep), and as text, written to the socket
  // as it is: a buffer kept for every body (a batch asks for each user once) made this mock's garbage collector mark
  // its whole heap every few seconds.
  const bodies = new LRUCache<string, string>({ maxSize: 64 * 1024 * 1024, sizeCalculation: (body) => body.length })
  // The same for every request and user, and up to 64 MiB: one copy, rebuilt only when hostileBytes changes.
  let nested: { bytes: number, body: Buffer } | undefined
  let flood: string[] | undefined

  function bodyFor (userId: string, overflow = false): string {
    const key = `${settings.payloadScale}|${overflow ? 'overflow|' : ''}${userId}`
    let body = bodies.get(key)
    if (!body) {
      body = overflow || !serialize
        ? JSON.stringify(overflow ? overflowingBody(generate(userId, settings.payloadScale)) : generate(userId, settings.payloadScale))
        : serialize(userId, settings.payloadScale)
      if (settings.payloadScale > 1) bodies.set(key, body)
    }
    return body
  }

  function nestedBody (bytes: number): Buffer {
    if (nested?.bytes !== bytes) nested = { bytes, body: nestedArraysBody(bytes) }
    return nested.body
  }

  async function control (request: IncomingMessage, response: ServerResponse) {
    if (request.method === 'GET') return sendJson(response, 200, settings)
    if (request.method === 'DELETE') {
      settings = { ...defaults }
      tailRandom = seededRandom(tailSeed)
      return sendJson(response, 200, settings)
    }
    if (request.method !== 'PUT') return sendJson(response, 405, { error: 'use GET, PUT or DELETE' }, { allow: 'GET, PUT, DELETE' })
    let update: unknown
    try {
      update = JSON.parse(await readBody(request))
    } catch {
      return sendJson(response, 400, { error: 'body must be JSON of at most 16 KiB' })
    }
    const result = updateSettings(settings, update)
    if ('problems' in result) return sendJson(response, 400, { error: 'invalid settings', problems: result.problems })
    settings = result.settings
    tailRandom = seededRandom(tailSeed)
    return sendJson(response, 200, settings)
  }

  function serveResource (request: IncomingMessage, response: ServerResponse, userId: string) {
    const current = settings
    stats.requests++
    stats.inFlight++
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight)
    stats.lastRequestId = (request.headers['x-request-id'] as string | undefined) ?? null
    const deadline = Number(request.headers['x-request-deadline-ms'])
    stats.lastDeadlineMs = Number.isFinite(deadline) ? deadline : null
    let resetByUs = false
    let timer: NodeJS.Timeout | undefined
    response.on('close', () => {
      clearTimeout(timer)
      clearInterval(timer)
      // Counted on the current stats: a reset while this request was in flight carried its inFlight over.
      stats.inFlight--
      if (resetByUs) stats.resets++
      else if (response.writableFinished) stats.completed++
      else stats.aborted++
    })

    // The fault mode and failureRate are for the users under modeUserPrefix only; the others are answered normally.
    const faulty = userId.startsWith(current.modeUserPrefix)
    const mode = faulty ? current.mode : 'normal'
    const failureRate = faulty ? current.failureRate : 0
    if (mode === 'hang') return

    const answer = () => {
      if (mode === 'reset') {
        resetByUs = true
        request.socket.destroy()
        return
      }
      if (mode === 'error' || Math.random() < failureRate) {
        return sendJson(response, current.failureStatus, { error: 'simulated failure' })
      }
      if (declaration.required && userId.startsWith('unknown')) return sendJson(response, 404, { error: 'user not found' })
      if (mode === 'nested') {
        const body = nestedBody(current.hostileBytes)
        response.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
        return response.end(body)
      }
      const body = bodyFor(userId, mode === 'overflow')
      if (mode === 'header-flood') {
        // A raw array: Node sends it as is, with no limit on outgoing headers.
        flood ??= floodHeaders()
        response.writeHead(200, ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(body)), ...flood])
        return response.end(body)
      }
      if (mode === 'malformed') {
        const bytes = Buffer.from(body)
        const broken = Buffer.concat([bytes.subarray(0, Math.floor(bytes.length * 0.6)), Buffer.from('\u0000}{"')])
        response.writeHead(200, { 'content-type': 'application/json', 'content-length': broken.length })
        return response.end(broken)
      }
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      if (mode !== 'slow-body') return response.end(body)
      response.flushHeaders()
      const bytes = Buffer.from(body)
      let offset = 0
      timer = setInterval(() => {
        response.write(bytes.subarray(offset, offset + TRICKLE_BYTES))
        offset += TRICKLE_BYTES
        if (offset >= bytes.length) {
          clearInterval(timer)
          response.end()
        }
      }, TRICKLE_INTERVAL_MS)
    }
    // One draw per answered request, whatever the rate, so the nth request's draw does not depend on earlier settings.
    const tail = tailRandom() < current.tailRate
    if (tail) stats.tail++
    // The same timer as any other wait: a client that leaves during a tail wait clears it and is counted as aborted.
    const delay = (tail ? current.tailLatencyMs : current.latencyMs) + Math.random() * current.jitterMs
    if (delay > 0) timer = setTimeout(answer, delay)
    else answer()
  }

  const server = createServer({ keepAliveTimeout: 65_000 }, (request, response) => {
    const path = (request.url ?? '/').split('?')[0]!
    if (path === '/__control') {
      control(request, response).catch(() => { if (!response.headersSent) sendJson(response, 400, { error: 'bad request' }) })
      return
    }
    if (path === '/__stats') {
      if (request.method === 'DELETE') stats = emptyStats(stats.inFlight)
      return sendJson(response, 200, stats)
    }
    if (path === '/health') return sendJson(response, 200, { status: 'ok', upstream: name })
    const match = resourcePath.exec(path)
    if (request.method !== 'GET' || !match) return sendJson(response, 404, { error: 'not found' })
    let userId: string
    try {
      userId = decodeURIComponent(match[1]!)
    } catch {
      return sendJson(response, 400, { error: 'bad user id encoding' })
    }
    serveResource(request, response, userId)
  })

  return {
    name,
    server,
    listen: (port = 0, host = '127.0.0.1') => new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        const { port: bound } = server.address() as AddressInfo
        resolve(`http://${host.includes(':') ? `[${host}]` : host}:${bound}`)
      })
    }),
    close: () => new Promise((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  }
}
