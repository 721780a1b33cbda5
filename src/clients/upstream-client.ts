import type { UpstreamDeclaration } from '../lib/contract/upstreams.js'
import { createBulkhead, type BulkheadStats } from '../lib/resilience/bulkhead.js'
import { createHttpTransport } from './http-transport.js'
import { composeSteps, type UpstreamCall } from './pipeline.js'
import { bulkheadStep } from './steps/bulkhead.js'
import { classifyErrors } from './steps/classify-errors.js'
import { requireBudget } from './steps/require-budget.js'

export interface UpstreamClientSettings {
  url: string
  timeoutMs: number
  concurrency: number
  maxQueue: number
  maxBodyBytes: number
  keepAliveTimeoutMs: number
}

export interface UpstreamClientStats {
  bulkhead: BulkheadStats
  connections: { connected: number, free: number, pending: number, running: number, size: number }
}

/**
 * A client for one upstream: the call pipeline classify errors → require budget → bulkhead → HTTP transport (an
 * undici Pool with as many keep-alive connections as calls allowed in flight).
 */
export function createUpstreamClient (declaration: UpstreamDeclaration, settings: UpstreamClientSettings) {
  const { name } = declaration
  const bulkhead = createBulkhead({ concurrency: settings.concurrency, maxQueue: settings.maxQueue })
  const transport = createHttpTransport(declaration, { ...settings, connections: settings.concurrency })
  const handle = composeSteps([classifyErrors(name), requireBudget(name), bulkheadStep(name, bulkhead)], transport.handle)

  return {
    name,
    timeoutMs: settings.timeoutMs,
    /** The user's raw body from this upstream, or an `UpstreamCallError`. */
    fetchBody: (userId: string, options: Omit<UpstreamCall, 'userId'>) => handle({ userId, ...options }),
    stats: (): UpstreamClientStats => ({ bulkhead: bulkhead.stats(), connections: transport.stats() }),
    close: () => transport.close()
  }
}

export type UpstreamClient = ReturnType<typeof createUpstreamClient>
