import { createMockService } from '../../mock-services/mock-service.js'
import type { MockSettings } from '../../mock-services/settings.js'
import type { MockStats } from '../../mock-services/mock-service.js'
import { UPSTREAM_NAMES, upstreamVariable, type BuiltInUpstream } from '../../src/lib/contract/upstreams.js'

export interface MockHandle {
  url: string
  /** Changes the mock's behaviour through its real control endpoint. */
  set (settings: Partial<MockSettings>): Promise<void>
  stats (): Promise<MockStats>
}

export interface MockUpstreams {
  mocks: Record<BuiltInUpstream, MockHandle>
  /** UPSTREAM_<NAME>_URL for each mock, to pass to the gateway's config. */
  env: Record<string, string>
  /** Restores every mock's defaults and zeroes its counters. */
  reset (): Promise<void>
  /** Stats of every mock at (nearly) the same moment. */
  allStats (): Promise<Record<BuiltInUpstream, MockStats>>
  close (): Promise<void>
}

async function call (url: string, method: string, body?: unknown): Promise<unknown> {
  const response = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  if (!response.ok) throw new Error(`${method} ${url} → ${response.status} ${await response.text()}`)
  return response.json()
}

/** Starts the five mock upstreams as real HTTP servers on ephemeral ports. */
export async function startMockUpstreams (): Promise<MockUpstreams> {
  const services = UPSTREAM_NAMES.map((name) => createMockService(name))
  const urls = await Promise.all(services.map((service) => service.listen(0)))
  const mocks = {} as Record<BuiltInUpstream, MockHandle>
  const env: Record<string, string> = {}
  UPSTREAM_NAMES.forEach((name, index) => {
    const url = urls[index]!
    env[upstreamVariable(name, 'URL')] = url
    mocks[name] = {
      url,
      set: async (settings) => { await call(`${url}/__control`, 'PUT', settings) },
      stats: async () => await call(`${url}/__stats`, 'GET') as MockStats
    }
  })
  return {
    mocks,
    env,
    reset: async () => {
      await Promise.all(urls.map(async (url) => {
        await call(`${url}/__control`, 'DELETE')
        await call(`${url}/__stats`, 'DELETE')
      }))
    },
    allStats: async () => {
      const stats = await Promise.all(UPSTREAM_NAMES.map((name) => mocks[name].stats()))
      return Object.fromEntries(UPSTREAM_NAMES.map((name, index) => [name, stats[index]])) as Record<BuiltInUpstream, MockStats>
    },
    close: async () => { await Promise.all(services.map((service) => service.close())) }
  }
}

/**
 * Polls `check` until it returns true or `timeoutMs` passes; for effects that land asynchronously (a socket close).
 * `what` names the condition in the error, or is called then to say what was seen last.
 */
export async function eventually (check: () => Promise<boolean>, timeoutMs = 3000, what: string | (() => string) = 'condition'): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs
  while (Date.now() < giveUpAt) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`)
}
