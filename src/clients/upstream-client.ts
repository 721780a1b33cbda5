import type { CircuitBreakerConfig, RetryConfig } from '../config.js'
import { channels } from '../lib/contract/events.js'
import type { UpstreamDeclaration } from '../lib/contract/upstreams.js'
import { createBulkhead, type BulkheadStats } from '../lib/resilience/bulkhead.js'
import { createCircuitBreaker, type CircuitBreakerStats } from '../lib/resilience/circuit-breaker.js'
import { createLatencyWindow } from '../lib/resilience/latency-window.js'
import { createRateBudget } from '../lib/resilience/rate-budget.js'
import { createHttpTransport } from './http-transport.js'
import { composeSteps, type CallStep, type CallTrace, type UpstreamCall } from './pipeline.js'
import { bulkheadStep } from './steps/bulkhead.js'
import { circuitBreakerStep } from './steps/circuit-breaker.js'
import { classifyErrors } from './steps/classify-errors.js'
import { coalesceStep, type CoalesceStats } from './steps/coalesce.js'
import { hedgeStep, type HedgeStats } from './steps/hedge.js'
import { requireBudget } from './steps/require-budget.js'
import { retryStep, type RetryStats } from './steps/retry.js'

export interface UpstreamClientSettings {
  url: string
  timeoutMs: number
  concurrency: number
  maxQueue: number
  maxBodyBytes: number
  keepAliveTimeoutMs: number
  circuitBreaker: CircuitBreakerConfig
  retry: RetryConfig
  hedge: { enabled: boolean, budgetRatio: number }
  coalesce: boolean
  /** Calls of batch items allowed in flight at once, beside the interactive ones (BATCH_IO_CONCURRENCY). */
  batchConcurrency: number
}

export interface UpstreamClientStats {
  bulkhead: BulkheadStats
  batchBulkhead: BulkheadStats
  connections: { connected: number, free: number, pending: number, running: number, size: number }
  /** null when the upstream has no breaker. */
  circuit: CircuitBreakerStats | null
  /** Counted since start: retries made and skipped, hedges sent and won, callers that joined another's call. */
  calls: { retries: number, retriesSkipped: RetryStats['skipped'], hedges: number, hedgesWon: number, coalesced: number }
}

// The window over which retries and hedges are a share of calls (Envoy and Finagle use 10 s).
const BUDGET_WINDOW_MS = 10_000

/**
 * A client for one upstream: the call pipeline
 *   classify errors → require budget → coalesce → retry → circuit breaker → hedge → bulkhead → HTTP transport
 * (an undici Pool with as many keep-alive connections as calls allowed in flight, interactive and batch). Coalescing is outermost, so callers
 * that share a call share its retries and hedges too; the breaker sits inside the retry so it judges every try, and a
 * retry meets an open circuit like any call; the bulkhead bounds every request sent, hedges included.
 */
export function createUpstreamClient (declaration: UpstreamDeclaration, settings: UpstreamClientSettings) {
  const { name } = declaration
  const bulkhead = createBulkhead({ concurrency: settings.concurrency, maxQueue: settings.maxQueue })
  // A batch item waits for a slot (stage 1 holds at most BATCH_IO_CONCURRENCY items in flight, so the queue stays short).
  const batchBulkhead = createBulkhead({ concurrency: settings.batchConcurrency, maxQueue: settings.batchConcurrency })
  const latency = createLatencyWindow()
  const transport = createHttpTransport(declaration, { ...settings, connections: settings.concurrency + settings.batchConcurrency, latency })
  const retryStats: RetryStats = { retries: 0, skipped: { budget: 0, deadline: 0 } }
  const hedgeStats: HedgeStats = { sent: 0, won: 0 }
  const coalesceStats: CoalesceStats = { joined: 0 }
  const breaker = settings.circuitBreaker.enabled
    ? createCircuitBreaker(settings.circuitBreaker, (transition) => {
      if (channels.circuit.hasSubscribers) channels.circuit.publish({ upstream: name, ...transition })
    })
    : null

  const steps: CallStep[] = [classifyErrors(name), requireBudget(name)]
  if (settings.coalesce) steps.push(coalesceStep(name, coalesceStats))
  steps.push(retryStep(name, {
    retries: settings.retry.retries,
    perTryTimeoutMs: settings.retry.perTryTimeoutMs,
    backoffMs: settings.retry.backoffMs,
    budget: createRateBudget({ ratio: settings.retry.budgetRatio, floor: settings.retry.budgetMin, windowMs: BUDGET_WINDOW_MS }),
    latency,
    typicalCallMs: settings.timeoutMs / 4
  }, retryStats))
  if (breaker) steps.push(circuitBreakerStep(name, breaker, settings.circuitBreaker.slowCallMs))
  if (settings.hedge.enabled) {
    steps.push(hedgeStep({ latency, budget: createRateBudget({ ratio: settings.hedge.budgetRatio, floor: 0, windowMs: BUDGET_WINDOW_MS }) }, hedgeStats))
  }
  steps.push(bulkheadStep(name, bulkhead, batchBulkhead))
  const handle = composeSteps(steps, transport.handle)

  return {
    name,
    timeoutMs: settings.timeoutMs,
    /** The user's raw body from this upstream, or an `UpstreamCallError`; `trace` says what the steps did. */
    fetchBody: (userId: string, options: Omit<UpstreamCall, 'userId' | 'trace'> & { trace?: CallTrace }) =>
      handle({ userId, ...options, trace: options.trace ?? { attempts: 0 } }),
    /** The breaker's state now, and how long until it lets a call through (null: no breaker). */
    circuit: () => {
      if (!breaker) return null
      const { state, openForMs } = breaker.stats()
      return { state, openForMs }
    },
    stats: (): UpstreamClientStats => ({
      bulkhead: bulkhead.stats(),
      batchBulkhead: batchBulkhead.stats(),
      connections: transport.stats(),
      circuit: breaker?.stats() ?? null,
      calls: { retries: retryStats.retries, retriesSkipped: { ...retryStats.skipped }, hedges: hedgeStats.sent, hedgesWon: hedgeStats.won, coalesced: coalesceStats.joined }
    }),
    close: () => transport.close()
  }
}

export type UpstreamClient = ReturnType<typeof createUpstreamClient>
