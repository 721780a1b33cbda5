import type { Socket } from 'node:net'
import { buildConnector } from 'undici'

/**
 * A bound on the size of every response head (status line, headers and the blank line), enforced on the socket before
 * undici's parser sees the bytes.
 *
 * Why not undici's own `maxHeaderSize`: in undici 7.30 the llhttp callbacks ignore the overflow. Once the limit is
 * passed, `Parser.trackHeader` (lib/dispatcher/client-h1.js) destroys the socket, but returns 0 to llhttp, which goes on
 * parsing the rest of the chunk already in memory, and every further header calls `trackHeader` again and builds a new
 * `HeadersOverflowError` with its stack trace. A response with 10,000 small headers cost about 100 ms of main-thread
 * CPU; a smaller `maxHeaderSize` makes it worse (more headers past the limit), a larger one parses them all (about
 * 8 ms). Counting bytes up to the first `\r\n\r\n` costs one `indexOf` per chunk, and a hostile head is dropped
 * before any of it is parsed.
 */

/** The default bound: undici's (and Node's) default `maxHeaderSize`, and about a hundred times our upstreams' heads. */
export const DEFAULT_MAX_RESPONSE_HEAD_BYTES = 16 * 1024

/** Thrown (as the request's error) when a response head is larger than allowed; the connection is destroyed. */
export class ResponseHeadTooLargeError extends Error {
  readonly code = 'ERR_UPSTREAM_RESPONSE_HEAD_TOO_LARGE'
  constructor (readonly maxHeadBytes: number) {
    super(`upstream response head exceeds ${maxHeadBytes} bytes`)
    this.name = 'ResponseHeadTooLargeError'
  }
}

const HEAD_END = Buffer.from('\r\n\r\n')
// The status code's first digit in `HTTP/1.1 1xx`: informational heads are followed by another head.
const STATUS_DIGIT_OFFSET = 9
const INFORMATIONAL = 0x31

/**
 * Watches the bytes arriving on `socket` and destroys it with a {@link ResponseHeadTooLargeError} as soon as a
 * response head passes `maxHeadBytes`. A new head is expected after each write of a request (undici with
 * `pipelining: 1` writes the next request only once the previous response is complete), and after a 1xx head. Meant
 * for requests whose body, if any, is written before the response starts (our upstream calls are bodiless GETs).
 */
export function guardResponseHeads (socket: Socket, maxHeadBytes: number): void {
  let awaitingHead = true
  let headBytes = 0
  let informational = false
  // The last bytes of the previous chunk, in case `\r\n\r\n` straddles two chunks.
  let carry: Buffer = Buffer.alloc(0)

  const startHead = () => {
    awaitingHead = true
    headBytes = 0
    informational = false
    carry = Buffer.alloc(0)
  }

  /** Reads a chunk while a head is expected; false if the head is now too large. */
  const inspect = (chunk: Buffer): boolean => {
    const view = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk
    // Bytes before `offset` are already counted; the search starts at 0 to find a `\r\n\r\n` begun in `carry`.
    let offset = carry.length
    let searchFrom = 0
    for (;;) {
      if (headBytes === 0 && view.length - offset > STATUS_DIGIT_OFFSET) informational = view[offset + STATUS_DIGIT_OFFSET] === INFORMATIONAL
      const end = view.indexOf(HEAD_END, searchFrom)
      if (end === -1) {
        headBytes += view.length - offset
        carry = Buffer.from(view.subarray(Math.max(searchFrom, view.length - HEAD_END.length + 1)))
        return headBytes <= maxHeadBytes
      }
      headBytes += end + HEAD_END.length - offset
      if (headBytes > maxHeadBytes) return false
      carry = Buffer.alloc(0)
      if (!informational) {
        awaitingHead = false
        return true
      }
      // A 1xx head: the real one follows, in this chunk or the next.
      offset = searchFrom = end + HEAD_END.length
      headBytes = 0
      informational = false
      if (offset >= view.length) return true
    }
  }

  const push = socket.push
  socket.push = function guardedPush (this: Socket, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (awaitingHead && Buffer.isBuffer(chunk) && !inspect(chunk)) {
      // Dropped unparsed: undici gets the error through the socket, never the flood.
      socket.destroy(new ResponseHeadTooLargeError(maxHeadBytes))
      return false
    }
    return push.call(this, chunk, encoding)
  }
  const write = socket.write
  socket.write = function guardedWrite (this: Socket, ...args: Parameters<Socket['write']>): boolean {
    startHead()
    return write.apply(this, args)
  } as Socket['write']
}

export interface ResponseHeaderGuardOptions {
  /** The most bytes one response head may have; {@link DEFAULT_MAX_RESPONSE_HEAD_BYTES} unless given. */
  maxHeadBytes?: number
  /**
   * What undici's default connector would be built with. A Pool given a `connect` function ignores its own
   * `connectTimeout`, so pass it here as `timeout`.
   */
  connector?: buildConnector.BuildOptions
}

/**
 * A `connect` option for an undici Pool or Client: undici's own connector, with every socket guarded by
 * {@link guardResponseHeads}. Use it with `pipelining: 1` (the guard expects one response per request written).
 */
export function guardedConnect ({ maxHeadBytes = DEFAULT_MAX_RESPONSE_HEAD_BYTES, connector = {} }: ResponseHeaderGuardOptions = {}): buildConnector.connector {
  const connect = buildConnector(connector)
  return (options, callback) => {
    connect(options, (error, socket) => {
      if (error !== null) return callback(error, null)
      guardResponseHeads(socket, maxHeadBytes)
      callback(null, socket)
    })
  }
}
