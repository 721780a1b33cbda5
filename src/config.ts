import { availableParallelism } from 'node:os'
import { getHeapStatistics } from 'node:v8'
import envSchema from 'env-schema'
import { FALLBACK_POLICIES, type FallbackPolicy } from './lib/fallback-policy.js'
import { UPSTREAM_NAMES, UPSTREAMS, upstreamVariable, type UpstreamName } from './lib/upstreams.js'

export interface UpstreamConfig {
  readonly name: UpstreamName
  readonly url: string
  readonly timeoutMs: number
  readonly concurrency: number
  readonly maxQueue: number
  readonly fallback: FallbackPolicy
}

export interface Config {
  readonly host: string
  readonly port: number
  readonly logLevel: string
  readonly aggregate: { readonly deadlineMs: number, readonly mergeReserveMs: number, readonly topK: number }
  readonly upstreams: Readonly<Record<UpstreamName, UpstreamConfig>>
  readonly upstreamTransport: { readonly maxResponseBytes: number, readonly keepAliveTimeoutMs: number }
  readonly staleCache: { readonly maxEntries: number, readonly maxBytes: number, readonly ttlMs: number }
  readonly mergePool: { readonly threads: number, readonly maxQueue: number, readonly inlineMaxBytes: number, readonly maxHeapMb: number }
  readonly loadShedding: {
    readonly enabled: boolean
    readonly targetEventLoopDelayMs: number
    readonly targetEventLoopUtilization: number
    readonly maxEventLoopDelayMs: number
    readonly maxEventLoopUtilization: number
    readonly maxHeapUsedBytes: number
    readonly maxRssBytes: number
    readonly sampleIntervalMs: number
    readonly retryAfterSeconds: number
  }
  readonly observability: {
    readonly metricsEnabled: boolean
    readonly dashboardEnabled: boolean
    /** Where /metrics and /dashboard are served: on the gateway's own port (undefined) or a separate one. */
    readonly port: number | undefined
    readonly host: string
    readonly maxDashboardClients: number
  }
  readonly shutdownTimeoutMs: number
}

export class ConfigError extends Error {
  constructor (readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

interface VariableSchema {
  type: 'integer' | 'number' | 'string' | 'boolean'
  description: string
  default?: number | string | boolean
  minimum?: number
  maximum?: number
  enum?: readonly string[]
  pattern?: string
}

const MiB = 1024 * 1024
const HTTP_URL = '^https?://[^\\s/?#]+(:[0-9]+)?/?$'

/** Every variable the service reads, with its type, bounds, default and meaning; the README's table is checked against it. */
export function configSchema (): Record<string, VariableSchema> {
  const schema: Record<string, VariableSchema> = {
    HOST: { type: 'string', default: '127.0.0.1', description: 'Interface the gateway listens on (`0.0.0.0` in containers).' },
    PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 3000, description: 'Port the gateway listens on.' },
    LOG_LEVEL: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', description: 'pino log level.' },
    AGGREGATE_DEADLINE_MS: { type: 'integer', minimum: 10, maximum: 60_000, default: 300, description: 'Whole-request deadline: fan-out, queueing and merge must fit in it.' },
    AGGREGATE_MERGE_RESERVE_MS: { type: 'integer', minimum: 0, maximum: 60_000, default: 30, description: 'Part of the deadline kept back for the merge; upstream calls get at most the rest.' },
    RECOMMENDATIONS_TOP_K: { type: 'integer', minimum: 1, maximum: 100, default: 10, description: 'How many ranked, in-stock recommendations a response carries.' }
  }
  for (const name of UPSTREAM_NAMES) {
    const { defaultPort, required } = UPSTREAMS[name]
    schema[upstreamVariable(name, 'URL')] = { type: 'string', pattern: HTTP_URL, default: `http://127.0.0.1:${defaultPort}`, description: `Origin of the ${name} upstream.` }
    schema[upstreamVariable(name, 'TIMEOUT_MS')] = { type: 'integer', minimum: 1, maximum: 60_000, default: 200, description: `Timeout of one ${name} call, queue wait included (capped by what is left of the deadline).` }
    schema[upstreamVariable(name, 'CONCURRENCY')] = { type: 'integer', minimum: 1, maximum: 10_000, default: 50, description: `Calls to ${name} in flight at once; also its connection limit.` }
    schema[upstreamVariable(name, 'MAX_QUEUE')] = { type: 'integer', minimum: 0, maximum: 100_000, default: 100, description: `Calls to ${name} allowed to wait for a slot; more are rejected at once.` }
    if (!required) {
      schema[upstreamVariable(name, 'FALLBACK')] = { type: 'string', enum: FALLBACK_POLICIES, default: 'stale-or-default', description: `What the ${name} section becomes when the call fails.` }
    }
  }
  Object.assign(schema, {
    UPSTREAM_MAX_RESPONSE_BYTES: { type: 'integer', minimum: 1024, maximum: 1024 * MiB, default: 8 * MiB, description: 'Largest upstream body accepted; a bigger one is an error.' },
    UPSTREAM_KEEP_ALIVE_TIMEOUT_MS: { type: 'integer', minimum: 1, maximum: 600_000, default: 4000, description: 'How long an idle upstream connection is kept.' },
    STALE_CACHE_MAX_ENTRIES: { type: 'integer', minimum: 0, maximum: 10_000_000, default: 10_000, description: 'Last-good upstream bodies kept for stale fallbacks (0 disables).' },
    STALE_CACHE_MAX_BYTES: { type: 'integer', minimum: 1024, maximum: 64 * 1024 * MiB, default: 64 * MiB, description: 'Total size of the stale cache.' },
    STALE_CACHE_TTL_MS: { type: 'integer', minimum: 1, maximum: 7 * 24 * 3600_000, default: 300_000, description: 'How old a last-good body may be and still be served.' },
    MERGE_POOL_THREADS: { type: 'integer', minimum: 1, maximum: 256, description: 'Worker threads that merge responses (default: the machine\'s cores, `os.availableParallelism()`).' },
    MERGE_POOL_MAX_QUEUE: { type: 'integer', minimum: 0, maximum: 100_000, description: 'Merges allowed to wait for a thread; more get 503 (default: 16 per thread).' },
    MERGE_POOL_MAX_HEAP_MB: { type: 'integer', minimum: 16, maximum: 65_536, default: 512, description: 'Heap limit of each merge thread; a thread over it is replaced and its merge fails.' },
    MERGE_INLINE_MAX_BYTES: { type: 'integer', minimum: 0, maximum: 1024 * MiB, default: 0, description: 'Merge on the event loop when the upstream bodies total at most this many bytes (0: always in the pool).' },
    LOAD_SHEDDING_ENABLED: { type: 'boolean', default: true, description: 'Answer 503 with Retry-After when the process is overloaded (the graduated target and the hard limits below).' },
    LOAD_SHEDDING_TARGET_EVENT_LOOP_UTILIZATION: { type: 'number', minimum: 0, maximum: 1, default: 0.9, description: 'Graduated shedding: turn away a share of requests, steered so event-loop utilisation per 100 ms stays near this (0: not used).' },
    LOAD_SHEDDING_TARGET_EVENT_LOOP_DELAY_MS: { type: 'integer', minimum: 0, maximum: 60_000, default: 100, description: 'Graduated shedding: also steered so the worst event-loop delay per 100 ms stays under this (0: not used).' },
    LOAD_SHEDDING_MAX_EVENT_LOOP_DELAY_MS: { type: 'integer', minimum: 0, maximum: 60_000, default: 200, description: 'Hard limit: mean event-loop delay over a sample interval above which every request is shed (0: off).' },
    LOAD_SHEDDING_MAX_EVENT_LOOP_UTILIZATION: { type: 'number', minimum: 0, maximum: 1, default: 0, description: 'Hard limit: event-loop utilisation over a sample interval above which every request is shed (0: off).' },
    LOAD_SHEDDING_MAX_HEAP_USED_BYTES: { type: 'integer', minimum: 0, description: 'Heap use above which requests are shed (default: 90% of the V8 heap limit; 0: off).' },
    LOAD_SHEDDING_MAX_RSS_BYTES: { type: 'integer', minimum: 0, default: 0, description: 'Resident memory above which requests are shed (0: off; set it near the container limit).' },
    LOAD_SHEDDING_SAMPLE_INTERVAL_MS: { type: 'integer', minimum: 10, maximum: 60_000, default: 500, description: 'How often pressure is sampled.' },
    LOAD_SHEDDING_RETRY_AFTER_SECONDS: { type: 'integer', minimum: 1, maximum: 3600, default: 2, description: 'Retry-After sent with every 503.' },
    METRICS_ENABLED: { type: 'boolean', default: true, description: 'Serve Prometheus metrics at `/metrics`.' },
    DASHBOARD_ENABLED: { type: 'boolean', default: true, description: 'Serve the live dashboard at `/dashboard` (and its event stream).' },
    OBSERVABILITY_PORT: { type: 'integer', minimum: 0, maximum: 65535, description: 'Serve `/metrics` and `/dashboard` on this port instead of the gateway\'s (unset: same port). Use it in production to keep them off the public port.' },
    OBSERVABILITY_HOST: { type: 'string', default: '127.0.0.1', description: 'Interface of the separate observability port (`0.0.0.0` in containers, unpublished).' },
    DASHBOARD_MAX_CLIENTS: { type: 'integer', minimum: 1, maximum: 1000, default: 10, description: 'Dashboards connected at once; more get 503.' },
    SHUTDOWN_TIMEOUT_MS: { type: 'integer', minimum: 0, maximum: 600_000, default: 10_000, description: 'How long SIGTERM waits for in-flight requests before the process exits anyway.' }
  } satisfies Record<string, VariableSchema>)
  return schema
}

/** Prefixes owned by this service: a variable with one of them that the schema does not know is a typo, not someone else's. */
const OWNED_PREFIXES = ['UPSTREAM_', 'AGGREGATE_', 'STALE_CACHE_', 'MERGE_POOL_', 'MERGE_INLINE_', 'LOAD_SHEDDING_', 'OBSERVABILITY_', 'DASHBOARD_', 'METRICS_']

/**
 * Reads and validates the configuration. This is the only place that reads `process.env`.
 * Throws a {@link ConfigError} naming every bad variable.
 */
export function loadConfig (env: NodeJS.ProcessEnv = process.env): Config {
  const schema = configSchema()
  const problems = Object.keys(env)
    .filter((key) => OWNED_PREFIXES.some((prefix) => key.startsWith(prefix)) && !(key in schema))
    .map((key) => `${key} is not a setting this service knows (see the configuration table in the README)`)

  const data: Record<string, string> = {}
  for (const key of Object.keys(schema)) {
    const value = env[key]
    if (value !== undefined && value !== '') data[key] = value
  }

  let values: Record<string, unknown> = {}
  try {
    values = envSchema({ data, dotenv: false, schema: { type: 'object', properties: schema } })
  } catch (error) {
    const details = (error as { errors?: Array<{ instancePath: string, message?: string, params?: { allowedValues?: unknown[] } }> }).errors ?? []
    for (const detail of details) {
      const key = detail.instancePath.replace(/^\//, '')
      const allowed = detail.params?.allowedValues ? ` (one of: ${detail.params.allowedValues.join(', ')})` : ''
      problems.push(`${key} ${detail.message ?? 'is invalid'}${allowed}; got ${JSON.stringify(data[key])}`)
    }
    if (details.length === 0) problems.push((error as Error).message)
    throw new ConfigError(problems)
  }

  const number = (key: string) => values[key] as number
  const deadlineMs = number('AGGREGATE_DEADLINE_MS')
  if (number('AGGREGATE_MERGE_RESERVE_MS') >= deadlineMs) {
    problems.push(`AGGREGATE_MERGE_RESERVE_MS (${number('AGGREGATE_MERGE_RESERVE_MS')}) must be less than AGGREGATE_DEADLINE_MS (${deadlineMs})`)
  }

  const upstreams = {} as Record<UpstreamName, UpstreamConfig>
  for (const name of UPSTREAM_NAMES) {
    const timeoutVariable = upstreamVariable(name, 'TIMEOUT_MS')
    // An upstream timeout longer than the deadline can never apply; like `krakend check`, say so instead of ignoring it.
    if (number(timeoutVariable) > deadlineMs) {
      problems.push(`${timeoutVariable} (${number(timeoutVariable)}) must not exceed AGGREGATE_DEADLINE_MS (${deadlineMs})`)
    }
    upstreams[name] = Object.freeze({
      name,
      url: (values[upstreamVariable(name, 'URL')] as string).replace(/\/$/, ''),
      timeoutMs: number(timeoutVariable),
      concurrency: number(upstreamVariable(name, 'CONCURRENCY')),
      maxQueue: number(upstreamVariable(name, 'MAX_QUEUE')),
      // A required upstream has no fallback; `omit` is what the merge is told, and the request fails before it matters.
      fallback: (values[upstreamVariable(name, 'FALLBACK')] ?? 'omit') as FallbackPolicy
    })
  }
  if (problems.length > 0) throw new ConfigError(problems)

  const threads = (values.MERGE_POOL_THREADS as number | undefined) ?? availableParallelism()
  return Object.freeze({
    host: values.HOST as string,
    port: number('PORT'),
    logLevel: values.LOG_LEVEL as string,
    aggregate: Object.freeze({ deadlineMs, mergeReserveMs: number('AGGREGATE_MERGE_RESERVE_MS'), topK: number('RECOMMENDATIONS_TOP_K') }),
    upstreams: Object.freeze(upstreams),
    upstreamTransport: Object.freeze({ maxResponseBytes: number('UPSTREAM_MAX_RESPONSE_BYTES'), keepAliveTimeoutMs: number('UPSTREAM_KEEP_ALIVE_TIMEOUT_MS') }),
    staleCache: Object.freeze({ maxEntries: number('STALE_CACHE_MAX_ENTRIES'), maxBytes: number('STALE_CACHE_MAX_BYTES'), ttlMs: number('STALE_CACHE_TTL_MS') }),
    mergePool: Object.freeze({
      threads,
      maxQueue: (values.MERGE_POOL_MAX_QUEUE as number | undefined) ?? threads * 16,
      inlineMaxBytes: number('MERGE_INLINE_MAX_BYTES'),
      maxHeapMb: number('MERGE_POOL_MAX_HEAP_MB')
    }),
    loadShedding: Object.freeze({
      enabled: values.LOAD_SHEDDING_ENABLED as boolean,
      targetEventLoopDelayMs: number('LOAD_SHEDDING_TARGET_EVENT_LOOP_DELAY_MS'),
      targetEventLoopUtilization: number('LOAD_SHEDDING_TARGET_EVENT_LOOP_UTILIZATION'),
      maxEventLoopDelayMs: number('LOAD_SHEDDING_MAX_EVENT_LOOP_DELAY_MS'),
      maxEventLoopUtilization: number('LOAD_SHEDDING_MAX_EVENT_LOOP_UTILIZATION'),
      maxHeapUsedBytes: (values.LOAD_SHEDDING_MAX_HEAP_USED_BYTES as number | undefined) ?? Math.floor(getHeapStatistics().heap_size_limit * 0.9),
      maxRssBytes: number('LOAD_SHEDDING_MAX_RSS_BYTES'),
      sampleIntervalMs: number('LOAD_SHEDDING_SAMPLE_INTERVAL_MS'),
      retryAfterSeconds: number('LOAD_SHEDDING_RETRY_AFTER_SECONDS')
    }),
    observability: Object.freeze({
      metricsEnabled: values.METRICS_ENABLED as boolean,
      dashboardEnabled: values.DASHBOARD_ENABLED as boolean,
      port: values.OBSERVABILITY_PORT as number | undefined,
      host: values.OBSERVABILITY_HOST as string,
      maxDashboardClients: number('DASHBOARD_MAX_CLIENTS')
    }),
    shutdownTimeoutMs: number('SHUTDOWN_TIMEOUT_MS')
  })
}
