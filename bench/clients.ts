import { connect, type Socket } from 'node:net'
import { Client } from 'undici'

// Clients autocannon cannot be: run in their own process (forked by bench/lib/load.ts, like the load generator) so
// they never share an event loop with what they measure.
//   retry-storm  N connections in a closed loop, each re-sending at once whenever it gets a 503 (a client that
//                ignores Retry-After) and moving on to the next path after a 200
//   burst        N separate connections, all connected first, then one GET written on each in the same tick
//   pipeline     one socket, N GET requests written back to back in one write, N responses read in order

export type ClientRequest =
  | { kind: 'retry-storm', origin: string, paths: string[], connections: number, durationSeconds: number }
  | { kind: 'burst' | 'pipeline', origin: string, paths: string[], count: number, timeoutSeconds?: number }

export interface RetryStormResult {
  durationSeconds: number
  ok: number
  shed: number
  otherStatus: number
  errors: number
  /** Per second over the run. */
  okPerSecond: number
  shedPerSecond: number
  /** Time from a path's first attempt to its 200, retries included. */
  okP50Ms: number | null
  okP99Ms: number | null
}

export interface BurstResult {
  sent: number
  byStatus: Record<string, number>
  /** Requests with no complete response (connection closed or timed out). */
  noResponse: number
  /** Latency of the 200s, from the moment all requests were written. */
  okP50Ms: number | null
  okMaxMs: number | null
  elapsedMs: number
}

export type ClientResult = RetryStormResult | BurstResult

const percentile = (sorted: number[], share: number) => sorted.length === 0 ? null : Math.round(sorted[Math.min(sorted.length - 1, Math.floor(share * sorted.length))]! * 100) / 100

async function retryStorm ({ origin, paths, connections, durationSeconds }: Extract<ClientRequest, { kind: 'retry-storm' }>): Promise<RetryStormResult> {
  const endAt = performance.now() + durationSeconds * 1000
  const counts = { ok: 0, shed: 0, otherStatus: 0, errors: 0 }
  const okLatencies: number[] = []
  let next = 0
  const clients = Array.from({ length: connections }, () => new Client(origin, { pipelining: 1, headersTimeout: 10_000, bodyTimeout: 10_000 }))
  async function loop (client: Client) {
    while (performance.now() < endAt) {
      const path = paths[next++ % paths.length]!
      const firstAttemptAt = performance.now()
      // Re-send the same path until it gets a 200: immediately on a 503, as a naive retrying client would.
      while (performance.now() < endAt) {
        try {
          const { statusCode, body } = await client.request({ method: 'GET', path })
          await body.dump()
          if (performance.now() >= endAt) return
          if (statusCode === 200) {
            counts.ok++
            okLatencies.push(performance.now() - firstAttemptAt)
            break
          }
          if (statusCode === 503) counts.shed++
          else counts.otherStatus++
        } catch {
          if (performance.now() >= endAt) return
          counts.errors++
          // A refused or reset connection: a short pause, so a dead server does not make this a hot loop.
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
      }
    }
  }
  await Promise.all(clients.map(loop))
  await Promise.all(clients.map((client) => client.destroy()))
  okLatencies.sort((left, right) => left - right)
  return {
    durationSeconds,
    ...counts,
    okPerSecond: Math.round((counts.ok / durationSeconds) * 10) / 10,
    shedPerSecond: Math.round((counts.shed / durationSeconds) * 10) / 10,
    okP50Ms: percentile(okLatencies, 0.5),
    okP99Ms: percentile(okLatencies, 0.99)
  }
}

/**
 * Reads `expected` HTTP/1.1 responses from `socket` in order and reports each status as it completes (body skipped by
 * content-length or chunked encoding). Resolves when all are read, the socket closes, or `timeoutMs` passes.
 */
function readResponses (socket: Socket, expected: number, timeoutMs: number, onResponse: (status: number) => void): Promise<number> {
  return new Promise((resolve) => {
    let buffer: Buffer = Buffer.alloc(0)
    let read = 0
    const finish = () => {
      clearTimeout(timer)
      socket.removeAllListeners('data')
      resolve(read)
    }
    const timer = setTimeout(finish, timeoutMs)
    socket.on('close', finish)
    socket.on('error', () => {})
    // Returns how many bytes one complete response at the start of `data` takes, or null if it is not all there yet.
    const responseLength = (data: Buffer): { length: number, status: number } | null => {
      const headEnd = data.indexOf('\r\n\r\n')
      if (headEnd === -1) return null
      const head = data.subarray(0, headEnd).toString('latin1')
      const status = Number(head.slice(9, 12))
      const bodyStart = headEnd + 4
      const contentLength = /\r\ncontent-length:\s*(\d+)/i.exec(head)
      if (contentLength) {
        const length = bodyStart + Number(contentLength[1])
        return data.length >= length ? { length, status } : null
      }
      if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
        let offset = bodyStart
        for (;;) {
          const lineEnd = data.indexOf('\r\n', offset)
          if (lineEnd === -1) return null
          const size = parseInt(data.subarray(offset, lineEnd).toString('latin1'), 16)
          offset = lineEnd + 2 + size + 2
          if (offset > data.length) return null
          if (size === 0) return { length: offset, status }
        }
      }
      return { length: bodyStart, status }
    }
    socket.on('data', (chunk: Buffer) => {
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
      for (;;) {
        const response = responseLength(buffer)
        if (!response) break
        buffer = buffer.subarray(response.length)
        read++
        onResponse(response.status)
        if (read === expected) return finish()
      }
    })
  })
}

function openSocket (origin: string): Promise<Socket> {
  const { hostname, port } = new URL(origin)
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), noDelay: true })
    socket.once('connect', () => resolve(socket))
    socket.once('error', reject)
  })
}

const requestText = (origin: string, path: string) => `GET ${path} HTTP/1.1\r\nhost: ${new URL(origin).host}\r\naccept: application/json\r\n\r\n`

async function burstOrPipeline ({ kind, origin, paths, count, timeoutSeconds = 30 }: Extract<ClientRequest, { kind: 'burst' | 'pipeline' }>): Promise<BurstResult> {
  const byStatus: Record<string, number> = {}
  const okLatencies: number[] = []
  const sockets = await Promise.all(Array.from({ length: kind === 'burst' ? count : 1 }, () => openSocket(origin)))
  let sentAt = 0
  const record = (status: number) => {
    byStatus[status] = (byStatus[status] ?? 0) + 1
    if (status === 200) okLatencies.push(performance.now() - sentAt)
  }
  let received: number[]
  try {
    const requests = Array.from({ length: count }, (_, index) => requestText(origin, paths[index % paths.length]!))
    if (kind === 'burst') {
      const reading = sockets.map((socket) => readResponses(socket, 1, timeoutSeconds * 1000, record))
      sentAt = performance.now()
      sockets.forEach((socket, index) => socket.write(requests[index]!))
      received = await Promise.all(reading)
    } else {
      const reading = readResponses(sockets[0]!, count, timeoutSeconds * 1000, record)
      sentAt = performance.now()
      sockets[0]!.write(requests.join(''))
      received = [await reading]
    }
  } finally {
    for (const socket of sockets) socket.destroy()
  }
  okLatencies.sort((left, right) => left - right)
  return {
    sent: count,
    byStatus,
    noResponse: count - received.reduce((sum, value) => sum + value, 0),
    okP50Ms: percentile(okLatencies, 0.5),
    okMaxMs: okLatencies.length === 0 ? null : Math.round(okLatencies.at(-1)! * 100) / 100,
    elapsedMs: Math.round(performance.now() - sentAt)
  }
}

export function runClientRequest (request: ClientRequest): Promise<ClientResult> {
  return request.kind === 'retry-storm' ? retryStorm(request) : burstOrPipeline(request)
}

// As a child process: one request in, one result out.
if (process.send) {
  process.once('message', (request: ClientRequest) => {
    runClientRequest(request).then(
      (result) => process.send!({ result }, () => process.exit(0)),
      (error: Error) => process.send!({ error: error.message }, () => process.exit(1))
    )
  })
}
