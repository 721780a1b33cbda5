import { isDeepStrictEqual } from 'node:util'
import { expect } from 'vitest'

/**
 * A response as a test holds it: read from fetch (`readResponse`), from `app.inject`, `rawGet` or a test's own reader.
 * The body may be the text or the parsed JSON; `text`, when given, is the raw text.
 */
export interface SeenResponse {
  status?: number
  statusCode?: number
  headers?: Headers | Record<string, unknown>
  body?: unknown
  text?: string
}

/** A fetch response read whole. `body` is the parsed JSON, or undefined when the text is not JSON. */
export interface ReadResponse {
  status: number
  headers: Headers
  text: string
  body: any
}

function parsed (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** Reads a fetch response whole, so a failed assertion can say what came back. */
export async function readResponse (response: Response): Promise<ReadResponse> {
  const text = await response.text()
  return { status: response.status, headers: response.headers, text, body: parsed(text) }
}

/** `fetch` and `readResponse` in one. */
export async function fetchResponse (url: string, init?: RequestInit): Promise<ReadResponse> {
  return readResponse(await fetch(url, init))
}

function header (headers: SeenResponse['headers'], name: string): unknown {
  if (headers === undefined) return undefined
  return typeof (headers as Headers).get === 'function' ? (headers as Headers).get(name) ?? undefined : (headers as Record<string, unknown>)[name]
}

/**
 * What came back, in one line: the status, the error code and message, the status of each upstream call of an
 * aggregate, the retry-after header, and the start of the body.
 */
export function describeResponse (response: SeenResponse, excerptLength = 300): string {
  const status = response.statusCode ?? response.status
  const text = response.text ?? (typeof response.body === 'string' ? response.body : JSON.stringify(response.body) ?? '')
  const json = (typeof response.body === 'object' && response.body !== null ? response.body : parsed(text)) as Record<string, any> | undefined
  const parts = [`status ${status}`]
  if (typeof json?.code === 'string') parts.push(`code ${json.code}`)
  if (typeof json?.message === 'string') parts.push(`message "${json.message}"`)
  const upstreams = json?.meta?.upstreams as Record<string, { status?: string, fallback?: string }> | undefined
  if (upstreams && typeof upstreams === 'object') {
    parts.push(`upstreams ${Object.entries(upstreams).map(([name, call]) => `${name}=${call?.status}${call?.fallback && call.fallback !== 'none' ? `→${call.fallback}` : ''}`).join(' ')}`)
  }
  const retryAfter = header(response.headers, 'retry-after')
  if (retryAfter !== undefined) parts.push(`retry-after ${String(retryAfter)}`)
  parts.push(`body ${text.length > excerptLength ? `${text.slice(0, excerptLength)}… (${text.length} chars)` : text}`)
  return parts.join(', ')
}

/** Asserts the status; on failure the message says what came back instead (status, code, upstreams, body excerpt). */
export function expectStatus (response: SeenResponse, expected: number, what?: string): void {
  expect(response.statusCode ?? response.status, `${what ? `${what}: ` : ''}expected ${expected}, got ${describeResponse(response)}`).toBe(expected)
}

/** The statuses of many responses, counted, with the error codes: `200 ×118, 503 AGG_ERR_MERGE_QUEUE_FULL ×2`. */
export function describeStatuses (responses: SeenResponse[]): string {
  const counts = new Map<string, number>()
  for (const response of responses) {
    const text = response.text ?? (typeof response.body === 'string' ? response.body : undefined)
    const json = (typeof response.body === 'object' && response.body !== null ? response.body : text === undefined ? undefined : parsed(text)) as { code?: unknown } | undefined
    const key = `${response.statusCode ?? response.status}${typeof json?.code === 'string' ? ` ${json.code}` : ''}`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return [...counts].sort(([left], [right]) => left.localeCompare(right)).map(([key, count]) => `${key} ×${count}`).join(', ')
}

/**
 * `expect(actual, what).toStrictEqual(expected)`, several times faster on large values (node's isDeepStrictEqual
 * does the comparison; vitest's diff is only computed on a difference). For loops over hundreds of large bodies.
 */
export function expectSame (actual: unknown, expected: unknown, what: string): void {
  if (isDeepStrictEqual(actual, expected)) return
  expect(actual, what).toStrictEqual(expected)
  // Both compare with Object.is, prototypes and own keys; should vitest see no difference anyway, still fail.
  throw new Error(`${what}: values differ (util.isDeepStrictEqual), though toStrictEqual shows no difference`)
}
