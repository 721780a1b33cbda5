import { randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'

// A caller's request id is reused only if it is short and plain: it goes into logs, upstream headers and JSON bodies.
const ACCEPTABLE_REQUEST_ID = /^[\w.:-]{1,128}$/

/** The caller's `x-request-id` when it is plain, else a new UUID. */
export function requestIdFor (request: { headers: IncomingHttpHeaders }): string {
  const offered = request.headers['x-request-id']
  return typeof offered === 'string' && ACCEPTABLE_REQUEST_ID.test(offered) ? offered : randomUUID()
}
