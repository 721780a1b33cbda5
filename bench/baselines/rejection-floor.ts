import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'

// The floor for a rejection: a bare node:http server answering every request with the gateway's 503 body
// (bench/rejection-cost.ts). /health answers 200 so the harness can wait for it.
const port = Number(process.env.PORT ?? 3311)
createServer((request, response) => {
  const body = JSON.stringify({ statusCode: 503, code: 'AGG_ERR_OVERLOADED', error: 'Service Unavailable', message: 'The gateway is at its concurrency limit and its queue is full; retry later', requestId: randomUUID() })
  response.writeHead(request.url === '/health' ? 200 : 503, ['content-type', 'application/json; charset=utf-8', 'content-length', String(Buffer.byteLength(body)), 'retry-after', '2'])
  response.end(body)
}).listen(port, '127.0.0.1')
