import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { getHeapStatistics } from 'node:v8'
import envSchema from 'env-schema'
import { FALLBACK_POLICIES, registry as builtInRegistry, upstreamVariable, type FallbackPolicy, type UpstreamName, type UpstreamRegistry } from './lib/contract/upstreams.js'

export interface CircuitBreakerConfig {
  readonly enabled: boolean
  /** Shares (0..1), as the breaker takes them; the variables are percentages. */
  readonly failureRate: number
  readonly slowCallRate: number
  readonly slowCallMs: number
  readonly windowSize: number
  readonly windowMs: number
  readonly minimumCalls: number
  readonly openMs: number
  readonly halfOpenProbes: number
}

export interface RetryConfig {
  /** 0 or 1: at most one retry. */
  readonly retries: number
  /** 0: a try may use the call's whole budget. */
  readonly perTryTimeoutMs: number
  readonly budgetRatio: number
  readonly budgetMin: number
  readonly backoffMs: number
}

export interface UpstreamConfig {
  readonly url: string
  readonly timeoutMs: number
  readonly concurrency: number
  readonly maxQueue: number
  readonly fallback: FallbackPolicy
  readonly maxBodyBytes: number
  readonly maxBodyElements: number
  readonly circuitBreaker: CircuitBreakerConfig
  readonly retry: RetryConfig
  readonly hedge: { readonly enabled: boolean, readonly budgetRatio: number }
  readonly coalesce: boolean
}

export interface Config {
  readonly host: string
  readonly port: number
  readonly logLevel: string
  readonly aggregate: { readonly deadlineMs: number, readonly mergeReserveMs: number, readonly topK: number }
  /** The declared upstreams, and the settings of each (`UPSTREAM_<NAME>_…`). */
  readonly registry: UpstreamRegistry
  /** The recognised variables this configuration was read from: a thread rebuilds it from them (loadConfig). */
  readonly variables: Readonly<Record<string, string>>
  readonly upstreams: Readonly<Record<UpstreamName, UpstreamConfig>>
  readonly upstreamTransport: { readonly keepAliveTimeoutMs: number, readonly batchConcurrency: number }
  readonly staleCache: { readonly maxEntries: number, readonly maxBytes: number, readonly ttlMs: number }
  readonly mergePool: { readonly threads: number, readonly maxQueue: number, readonly inlineMaxBytes: number, readonly inlineWhenAloneMaxBytes: number, readonly maxHeapMb: number }
  readonly server: {
    readonly maxConnections: number
    readonly requestTimeoutMs: number
    readonly headersTimeoutMs: number
    readonly keepAliveTimeoutMs: number
  }
  readonly admission: {
    readonly enabled: boolean
    readonly initialLimit: number
    readonly minLimit: number
    readonly maxLimit: number
    readonly maxQueue: number
    readonly queueTargetMs: number
    readonly queueIntervalMs: number
    readonly latencyTolerance: number
  }
  readonly loadShedding: {
    readonly enabled: boolean
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
    /** Where /metrics and /dashboard are served: a separate port (the default), or the gateway's own when undefined. */
    readonly port: number | undefined
    readonly host: string
    readonly maxDashboardClients: number
    readonly dashboardStreamMaxSeconds: number
  }
  readonly batch: {
    readonly maxUsers: number
    readonly ioConcurrency: number
    readonly queueSize: number
    /** Threads of the batches' merge pool, and merges of one batch at once (default: every core). */
    readonly cpuConcurrency: number
    /** Their OS niceness: they run on the CPU the event loop and interactive merges leave. */
    readonly cpuNiceness: number
    /** In process: each batch's stages run on a thread of their own (src/batch-thread.ts). */
    readonly onThread: boolean
    /** The batch thread's OS niceness (Linux). */
    readonly threadNiceness: number
    readonly itemTimeoutMs: number
    readonly retries: number
    readonly deadlineMs: number
    readonly maxRunning: number
    readonly retainMs: number
    readonly maxRetained: number
    readonly resultsDirectory: string
    readonly maxResultBytes: number
    /** Set with BATCH_REDIS_URL: batches live in Redis as BullMQ jobs, shared by every process. */
    readonly distributed: {
      readonly redisUrl: string
      readonly globalIoConcurrency: number
      readonly itemsPerJob: number
      readonly gatewayTakesItems: boolean
      readonly lockDurationMs: number
      readonly stalledIntervalMs: number
    } | undefined
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
export function configSchema (registry: UpstreamRegistry = builtInRegistry): Record<string, VariableSchema> {
  const schema: Record<string, VariableSchema> = {
    HOST: { type: 'string', default: '127.0.0.1', description: 'Interface the gateway listens on (`0.0.0.0` in containers).' },
    PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 3000, description: 'Port the gateway listens on.' },
    LOG_LEVEL: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', description: 'pino log level.' },
    AGGREGATE_DEADLINE_MS: { type: 'integer', minimum: 10, maximum: 60_000, default: 300, description: 'Whole-request deadline: fan-out, queueing and merge must fit in it.' },
    AGGREGATE_MERGE_RESERVE_MS: { type: 'integer', minimum: 0, maximum: 60_000, default: 30, description: 'Part of the deadline kept back for the merge; upstream calls get at most the rest.' },
    RECOMMENDATIONS_TOP_K: { type: 'integer', minimum: 1, maximum: 100, default: 10, description: 'How many ranked, in-stock recommendations a response carries.' }
  }
  for (const { name, required, defaults } of registry.upstreams) {
    schema[upstreamVariable(name, 'URL')] = { type: 'string', pattern: HTTP_URL, default: `http://127.0.0.1:${defaults.port}`, description: `Origin of the ${name} upstream.` }
    schema[upstreamVariable(name, 'TIMEOUT_MS')] = { type: 'integer', minimum: 1, maximum: 60_000, default: defaults.timeoutMs, description: `Timeout of one ${name} call, queue wait included (capped by what is left of the deadline).` }
    schema[upstreamVariable(name, 'CONCURRENCY')] = { type: 'integer', minimum: 1, maximum: 10_000, default: defaults.concurrency, description: `Calls to ${name} in flight at once; also its connection limit.` }
    schema[upstreamVariable(name, 'MAX_BODY_BYTES')] = { type: 'integer', minimum: 1024, maximum: 1024 * MiB, default: defaults.maxBodyBytes, description: `Largest ${name} body accepted; a bigger one is cut off while it arrives and counts as an error.` }
    schema[upstreamVariable(name, 'MAX_BODY_ELEMENTS')] = { type: 'integer', minimum: 1, maximum: 1_000_000_000, default: defaults.maxBodyElements, description: `Most JSON values a ${name} body may hold, counted on the bytes before parsing; more makes it malformed.` }
    schema[upstreamVariable(name, 'MAX_QUEUE')] = { type: 'integer', minimum: 0, maximum: 100_000, default: defaults.maxQueue, description: `Calls to ${name} allowed to wait for a slot; more are rejected at once.` }
    if (!required) {
      schema[upstreamVariable(name, 'FALLBACK')] = { type: 'string', enum: FALLBACK_POLICIES, default: defaults.fallback, description: `What the ${name} section becomes when the call fails.` }
    }
    Object.assign(schema, resilienceSchema(name))
  }
  Object.assign(schema, {
    UPSTREAM_KEEP_ALIVE_TIMEOUT_MS: { type: 'integer', minimum: 1, maximum: 600_000, default: 4000, description: 'How long an idle upstream connection is kept.' },
    STALE_CACHE_MAX_ENTRIES: { type: 'integer', minimum: 0, maximum: 10_000_000, default: 10_000, description: 'Last-good upstream bodies kept for stale fallbacks (0 disables).' },
    STALE_CACHE_MAX_BYTES: { type: 'integer', minimum: 1024, maximum: 64 * 1024 * MiB, default: 64 * MiB, description: 'Total size of the stale cache.' },
    STALE_CACHE_TTL_MS: { type: 'integer', minimum: 1, maximum: 7 * 24 * 3600_000, default: 300_000, description: 'How old a last-good body may be and still be served.' },
    MERGE_POOL_THREADS: { type: 'integer', minimum: 1, maximum: 256, description: 'Worker threads that merge responses (default: the machine\'s cores, `os.availableParallelism()`).' },
    MERGE_POOL_MAX_QUEUE: { type: 'integer', minimum: 0, maximum: 100_000, description: 'Merges allowed to wait for a thread; more get 503 (default: ADMISSION_MAX_LIMIT, so every admitted aggregate can queue its merge).' },
    MERGE_POOL_MAX_HEAP_MB: { type: 'integer', minimum: 16, maximum: 65_536, default: 128, description: 'Heap limit of each merge thread; a thread over it is replaced and its merge fails.' },
    MERGE_INLINE_MAX_BYTES: { type: 'integer', minimum: 0, maximum: 1024 * MiB, default: 0, description: 'Always merge on the event loop when the upstream bodies total at most this many bytes (0: never; the benchmark\'s inline baseline).' },
    MERGE_INLINE_WHEN_ALONE_MAX_BYTES: { type: 'integer', minimum: 0, maximum: 1024 * MiB, default: 256 * 1024, description: 'Merge on the event loop when no other aggregate is in flight and the bodies total at most this many bytes: the loop would only wait for the worker (0: never).' },
    SERVER_MAX_CONNECTIONS: { type: 'integer', minimum: 1, maximum: 1_000_000, default: 10_000, description: 'Client connections the gateway port holds at once; more are refused by the kernel backlog.' },
    SERVER_REQUEST_TIMEOUT_MS: { type: 'integer', minimum: 0, maximum: 600_000, default: 30_000, description: 'Time a client has to send a whole request (0: none). Slow clients cannot hold a socket forever.' },
    SERVER_HEADERS_TIMEOUT_MS: { type: 'integer', minimum: 0, maximum: 600_000, default: 10_000, description: 'Time a client has to send the request headers (0: none; at most SERVER_REQUEST_TIMEOUT_MS).' },
    SERVER_KEEP_ALIVE_TIMEOUT_MS: { type: 'integer', minimum: 0, maximum: 600_000, default: 72_000, description: 'How long an idle client connection is kept; longer than a typical load balancer\'s 60 s.' },
    ADMISSION_ENABLED: { type: 'boolean', default: true, description: 'Adaptive admission of aggregates: a limit on requests in flight and a short CoDel queue; beyond them a cheap 503.' },
    ADMISSION_INITIAL_LIMIT: { type: 'integer', minimum: 1, maximum: 100_000, default: 32, description: 'Aggregates in flight allowed at start; the limit then adapts (Gradient2) between the minimum and maximum.' },
    ADMISSION_MIN_LIMIT: { type: 'integer', minimum: 1, maximum: 100_000, default: 8, description: 'The adaptive limit never goes below this.' },
    ADMISSION_MAX_LIMIT: { type: 'integer', minimum: 1, maximum: 100_000, default: 256, description: 'The adaptive limit never goes above this.' },
    ADMISSION_MAX_QUEUE: { type: 'integer', minimum: 0, maximum: 100_000, default: 128, description: 'Aggregates allowed to wait for a slot; more get 503 at once.' },
    ADMISSION_QUEUE_TARGET_MS: { type: 'integer', minimum: 0, maximum: 60_000, default: 5, description: 'CoDel target: once the queue has stood for the interval, a request waits at most this long.' },
    ADMISSION_QUEUE_INTERVAL_MS: { type: 'integer', minimum: 1, maximum: 60_000, default: 100, description: 'CoDel interval: the longest any request waits, and how long a queue may stand before waits drop to the target.' },
    ADMISSION_LATENCY_TOLERANCE: { type: 'number', minimum: 1, maximum: 100, default: 2, description: 'The limit drops once recent own time (handler time not spent waiting on upstreams) exceeds this multiple of its long-run average.' },
    LOAD_SHEDDING_ENABLED: { type: 'boolean', default: true, description: 'Backstop: answer every request with 503 while the process is over one of the hard limits below.' },
    LOAD_SHEDDING_MAX_EVENT_LOOP_DELAY_MS: { type: 'integer', minimum: 0, maximum: 60_000, default: 200, description: 'Hard limit: mean event-loop delay over a sample interval above which every request is shed (0: off).' },
    LOAD_SHEDDING_MAX_EVENT_LOOP_UTILIZATION: { type: 'number', minimum: 0, maximum: 1, default: 0, description: 'Hard limit: event-loop utilisation over the last second above which every request is shed, checked every sample interval (0: off).' },
    LOAD_SHEDDING_MAX_HEAP_USED_BYTES: { type: 'integer', minimum: 0, description: 'Heap use above which requests are shed (default: 90% of the V8 heap limit; 0: off).' },
    LOAD_SHEDDING_MAX_RSS_BYTES: { type: 'integer', minimum: 0, default: 0, description: 'Resident memory above which requests are shed (0: off; set it near the container limit).' },
    LOAD_SHEDDING_SAMPLE_INTERVAL_MS: { type: 'integer', minimum: 10, maximum: 60_000, default: 500, description: 'How often pressure is sampled.' },
    LOAD_SHEDDING_RETRY_AFTER_SECONDS: { type: 'integer', minimum: 1, maximum: 3600, default: 2, description: 'Retry-After sent with every 503.' },
    METRICS_ENABLED: { type: 'boolean', default: true, description: 'Serve Prometheus metrics at `/metrics`.' },
    DASHBOARD_ENABLED: { type: 'boolean', default: true, description: 'Serve the live dashboard at `/dashboard` (and its event stream).' },
    OBSERVABILITY_PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 9464, description: 'Port of `/metrics` and `/dashboard`, kept off the aggregate port (9464, the OpenTelemetry Prometheus exporter\'s; 0: any free port).' },
    OBSERVABILITY_ON_GATEWAY_PORT: { type: 'boolean', default: false, description: 'Serve `/metrics` and `/dashboard` on the gateway\'s own port instead (they reveal versions and memory: keep it off where that port is public).' },
    OBSERVABILITY_HOST: { type: 'string', default: '127.0.0.1', description: 'Interface of the separate observability port (`0.0.0.0` in containers, unpublished).' },
    DASHBOARD_MAX_CLIENTS: { type: 'integer', minimum: 1, maximum: 1000, default: 10, description: 'Dashboards connected at once; more get 503.' },
    DASHBOARD_STREAM_MAX_SECONDS: { type: 'integer', minimum: 1, maximum: 86_400, default: 300, description: 'A dashboard stream is closed after this long (the page reconnects), and at once if its client stops reading.' },
    BATCH_MAX_USERS: { type: 'integer', minimum: 1, maximum: 1_000_000, default: 100_000, description: 'Most user ids in one batch; a bigger one is refused with 400.' },
    BATCH_IO_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 10_000, default: 50, description: 'Stage 1: batch items fetching at once in this process, so at most this many batch calls in flight per upstream (beside the interactive ones).' },
    BATCH_QUEUE_SIZE: { type: 'integer', minimum: 1, maximum: 100_000, default: 100, description: 'Fetched items waiting for a merge; a full queue pauses stage 1.' },
    BATCH_CPU_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 256, description: 'Stage 2: worker threads of the batches\' own merge pool, and merges of one batch at once (default: the machine\'s cores). Beside the interactive pool, never sharing its threads.' },
    BATCH_ON_THREAD: { type: 'boolean', default: true, description: 'Without BATCH_REDIS_URL: run each batch\'s two stages on a thread of their own (its own event loop, heap, upstream clients, circuit breakers and retry budgets), so the batch\'s calls and garbage stay off the interactive event loop (interactive p99 during a batch 0.97-1.26x its p99 alone with BATCH_THREAD_NICENESS at its default, against 1.39-1.58x on the event loop, scenario 13). false: on the event loop, with the interactive clients and breakers, and 120-210 MiB less RSS.' },
    BATCH_THREAD_NICENESS: { type: 'integer', minimum: 0, maximum: 19, default: 5, description: 'With BATCH_ON_THREAD: OS niceness of the batch thread (Linux), so the event loop serving interactive requests gets the CPU first (interactive p99 during a batch 0.97-1.26x its p99 alone at 5, against 1.26-1.40x at 0, scenario 13, about the same batch time). 0: the same priority as the event loop.' },
    BATCH_CPU_NICENESS: { type: 'integer', minimum: 0, maximum: 19, default: 10, description: 'OS niceness of the batch merge threads (Linux): above 0, the event loop, interactive merges and other processes at normal priority go first, and a batch merges on the CPU they leave. 0: the same priority as the rest.' },
    BATCH_ITEM_TIMEOUT_MS: { type: 'integer', minimum: 1, maximum: 60_000, default: 200, description: 'Timeout of each try of a batch item\'s upstream call.' },
    BATCH_RETRIES: { type: 'integer', minimum: 0, maximum: 1, default: 1, description: 'Retries of a batch item\'s failed call (the same safe failures and retry budget as interactive calls).' },
    BATCH_DEADLINE_MS: { type: 'integer', minimum: 1000, maximum: 86_400_000, default: 300_000, description: 'A batch still running after this long is cancelled and ends `deadline-exceeded`.' },
    BATCH_MAX_RUNNING: { type: 'integer', minimum: 1, maximum: 1000, default: 2, description: 'Batches running at once; more wait as `queued`.' },
    BATCH_RETAIN_MS: { type: 'integer', minimum: 1000, maximum: 604_800_000, default: 3_600_000, description: 'How long a finished batch and its results are kept.' },
    BATCH_MAX_RETAINED: { type: 'integer', minimum: 1, maximum: 100_000, default: 100, description: 'Most batches kept; the oldest finished one is forgotten first, and a new batch is refused with 503 when all are running or queued.' },
    BATCH_RESULTS_DIRECTORY: { type: 'string', description: 'Where results are written as they complete, one NDJSON file per batch, read back by GET /batches/:id/results (default: a directory under the OS temp dir).' },
    BATCH_MAX_RESULT_BYTES: { type: 'integer', minimum: 1024 * 1024, maximum: 1024 * 1024 * MiB, default: 2048 * MiB, description: 'Disk the results of all kept batches may use; beyond it new batches are refused with 503 and a running one fails.' },
    BATCH_REDIS_URL: { type: 'string', pattern: '^rediss?://', description: 'Redis that batches live on, as BullMQ jobs shared by every gateway and `npm run worker` process (unset: batches run in this process, nothing else needed).' },
    BATCH_GLOBAL_IO_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 10_000, description: 'With BATCH_REDIS_URL: batch items fetching at once across every process (BullMQ global concurrency), so at most this many batch calls in flight per upstream however many processes take items (default: BATCH_IO_CONCURRENCY).' },
    BATCH_ITEMS_PER_JOB: { type: 'integer', minimum: 1, maximum: 1000, default: 10, description: 'With BATCH_REDIS_URL: most items in one BullMQ job, fetched one after another by the process that takes it (fewer in a small batch, so every slot gets work): the queue\'s cost is paid per job, not per item.' },
    BATCH_GATEWAY_TAKES_ITEMS: { type: 'boolean', default: true, description: 'With BATCH_REDIS_URL: this gateway takes batch items too, beside the batch-worker processes (false: it only accepts and serves batches).' },
    BATCH_LOCK_DURATION_MS: { type: 'integer', minimum: 1000, maximum: 600_000, default: 30_000, description: 'With BATCH_REDIS_URL: a process renews the lock on each item job it holds; one that stops (killed, frozen) loses its jobs to the others once this passes.' },
    BATCH_STALLED_INTERVAL_MS: { type: 'integer', minimum: 500, maximum: 600_000, default: 30_000, description: 'With BATCH_REDIS_URL: how often each process looks for item jobs whose lock lapsed and queues them again; a dead process\'s items resume within BATCH_LOCK_DURATION_MS + this.' },
    SHUTDOWN_TIMEOUT_MS: { type: 'integer', minimum: 0, maximum: 600_000, default: 10_000, description: 'How long SIGTERM waits for in-flight requests before the process exits anyway.' }
  } satisfies Record<string, VariableSchema>)
  return schema
}

/** The resilience policies of one upstream's calls (src/clients/steps): the same variables and defaults for each. */
function resilienceSchema (name: string): Record<string, VariableSchema> {
  const variable = (suffix: string, schema: VariableSchema) => [upstreamVariable(name, suffix), schema] as const
  const percent = (fallback: number, description: string): VariableSchema => ({ type: 'integer', minimum: 0, maximum: 100, default: fallback, description })
  return Object.fromEntries([
    variable('CIRCUIT_BREAKER', { type: 'boolean', default: true, description: `A circuit breaker on ${name} calls: while open, no call is made and the section gets its fallback at once (a required upstream: 503 with Retry-After).` }),
    variable('CIRCUIT_FAILURE_RATE', percent(50, `Percentage of failed ${name} calls in the window (5xx, connection errors, timeouts) that opens the circuit.`)),
    variable('CIRCUIT_SLOW_CALL_RATE', percent(100, `Percentage of slow ${name} calls in the window that opens the circuit, even if they succeed (100: only when every call is slow, since a busy gateway makes healthy calls look slow too).`)),
    variable('CIRCUIT_SLOW_CALL_MS', { type: 'integer', minimum: 1, maximum: 60_000, description: `A ${name} call at least this long is slow (default: 80% of its timeout). A timeout shorter than this is the deadline's doing and is not counted.` }),
    variable('CIRCUIT_WINDOW_SIZE', { type: 'integer', minimum: 1, maximum: 10_000, default: 100, description: `The rates are over the last this many ${name} calls …` }),
    variable('CIRCUIT_WINDOW_MS', { type: 'integer', minimum: 100, maximum: 3_600_000, default: 10_000, description: '… none older than this.' }),
    variable('CIRCUIT_MIN_CALLS', { type: 'integer', minimum: 1, maximum: 10_000, default: 20, description: 'Fewer calls than this in the window never open the circuit.' }),
    variable('CIRCUIT_OPEN_MS', { type: 'integer', minimum: 1, maximum: 3_600_000, default: 5000, description: `How long the circuit stays open before probing ${name} again.` }),
    variable('CIRCUIT_HALF_OPEN_PROBES', { type: 'integer', minimum: 1, maximum: 1000, default: 1, description: 'Probes let through while half-open (others get the fallback at once); this many successes close the circuit, one failure reopens it.' }),
    variable('RETRIES', { type: 'integer', minimum: 0, maximum: 1, default: 1, description: `Retries of a failed ${name} call: only for a connection refused or reset before any response byte, a 502, 503 or 504, or a per-try timeout; never for a 4xx or a malformed body.` }),
    variable('RETRY_PER_TRY_TIMEOUT_MS', { type: 'integer', minimum: 0, maximum: 60_000, default: 0, description: 'Timeout of each try, so a hung first try leaves time for a second (0: a try may use the whole call budget).' }),
    variable('RETRY_BUDGET_PERCENT', percent(20, `Retries may be at most this percentage of ${name} calls over the last 10 s (Envoy's retry_budget) …`)),
    variable('RETRY_BUDGET_MIN', { type: 'integer', minimum: 0, maximum: 10_000, default: 3, description: '… plus this many, so a quiet upstream can still retry.' }),
    variable('RETRY_BACKOFF_MS', { type: 'integer', minimum: 0, maximum: 10_000, default: 25, description: 'A retry waits a random time up to this (full jitter), and only if what is left of the call budget still fits a typical call.' }),
    variable('HEDGE', { type: 'string', enum: ['off', 'auto'], default: 'off', description: `\`auto\`: when a ${name} call is slower than its recent p95, send one more and use the first good answer (the other is cancelled).` }),
    variable('HEDGE_BUDGET_PERCENT', percent(10, `Hedges may be at most this percentage of ${name} calls over the last 10 s.`)),
    variable('COALESCE', { type: 'boolean', default: true, description: `Concurrent ${name} calls for the same user share one call (its request id and deadline header are the first caller's).` })
  ])
}

/** Prefixes owned by this service: a variable with one of them that the schema does not know is a typo, not someone else's. */
const OWNED_PREFIXES = ['BATCH_', 'SERVER_', 'ADMISSION_', 'UPSTREAM_', 'AGGREGATE_', 'STALE_CACHE_', 'MERGE_POOL_', 'MERGE_INLINE_', 'LOAD_SHEDDING_', 'OBSERVABILITY_', 'DASHBOARD_', 'METRICS_']

/**
 * Reads and validates the configuration. This is the only place that reads `process.env`.
 * Throws a {@link ConfigError} naming every bad variable.
 */
export function loadConfig (env: NodeJS.ProcessEnv = process.env, registry: UpstreamRegistry = builtInRegistry): Config {
  const schema = configSchema(registry)
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
    // env: false — env-schema would otherwise merge process.env over `data` again, empty values and all.
    values = envSchema({ data, env: false, dotenv: false, schema: { type: 'object', properties: schema } })
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

  const upstreams: Record<UpstreamName, UpstreamConfig> = {}
  for (const { name } of registry.upstreams) {
    const timeoutVariable = upstreamVariable(name, 'TIMEOUT_MS')
    // An upstream timeout longer than the deadline can never apply; like `krakend check`, say so instead of ignoring it.
    if (number(timeoutVariable) > deadlineMs) {
      problems.push(`${timeoutVariable} (${number(timeoutVariable)}) must not exceed AGGREGATE_DEADLINE_MS (${deadlineMs})`)
    }
    upstreams[name] = Object.freeze({
      url: (values[upstreamVariable(name, 'URL')] as string).replace(/\/$/, ''),
      timeoutMs: number(timeoutVariable),
      concurrency: number(upstreamVariable(name, 'CONCURRENCY')),
      maxQueue: number(upstreamVariable(name, 'MAX_QUEUE')),
      maxBodyBytes: number(upstreamVariable(name, 'MAX_BODY_BYTES')),
      maxBodyElements: number(upstreamVariable(name, 'MAX_BODY_ELEMENTS')),
      // A required upstream has no fallback; `omit` is what the merge is told, and the request fails before it matters.
      fallback: (values[upstreamVariable(name, 'FALLBACK')] ?? 'omit') as FallbackPolicy,
      ...resilienceConfig(name, values)
    })
  }
  if (number('SERVER_REQUEST_TIMEOUT_MS') > 0 && number('SERVER_HEADERS_TIMEOUT_MS') > number('SERVER_REQUEST_TIMEOUT_MS')) {
    problems.push(`SERVER_HEADERS_TIMEOUT_MS (${number('SERVER_HEADERS_TIMEOUT_MS')}) must not exceed SERVER_REQUEST_TIMEOUT_MS (${number('SERVER_REQUEST_TIMEOUT_MS')})`)
  }
  if (number('ADMISSION_MIN_LIMIT') > number('ADMISSION_MAX_LIMIT')) {
    problems.push(`ADMISSION_MIN_LIMIT (${number('ADMISSION_MIN_LIMIT')}) must not exceed ADMISSION_MAX_LIMIT (${number('ADMISSION_MAX_LIMIT')})`)
  }
  if (values.BATCH_REDIS_URL === undefined) {
    for (const key of ['BATCH_GLOBAL_IO_CONCURRENCY', 'BATCH_ITEMS_PER_JOB', 'BATCH_GATEWAY_TAKES_ITEMS', 'BATCH_LOCK_DURATION_MS', 'BATCH_STALLED_INTERVAL_MS']) {
      if (key in data) problems.push(`${key} applies only with BATCH_REDIS_URL, which is not set`)
    }
  } else {
    for (const key of ['BATCH_ON_THREAD', 'BATCH_THREAD_NICENESS']) {
      if (key in data) problems.push(`${key} applies only without BATCH_REDIS_URL (a batch worker process already keeps batches off the gateway's event loop)`)
    }
  }
  if (values.BATCH_ON_THREAD === false && 'BATCH_THREAD_NICENESS' in data) problems.push('BATCH_THREAD_NICENESS applies only with BATCH_ON_THREAD=true')
  if (problems.length > 0) throw new ConfigError(problems)

  const threads = (values.MERGE_POOL_THREADS as number | undefined) ?? availableParallelism()
  return Object.freeze({
    host: values.HOST as string,
    port: number('PORT'),
    logLevel: values.LOG_LEVEL as string,
    aggregate: Object.freeze({ deadlineMs, mergeReserveMs: number('AGGREGATE_MERGE_RESERVE_MS'), topK: number('RECOMMENDATIONS_TOP_K') }),
    registry,
    variables: Object.freeze({ ...data }),
    upstreams: Object.freeze(upstreams),
    upstreamTransport: Object.freeze({ keepAliveTimeoutMs: number('UPSTREAM_KEEP_ALIVE_TIMEOUT_MS'), batchConcurrency: number('BATCH_IO_CONCURRENCY') }),
    staleCache: Object.freeze({ maxEntries: number('STALE_CACHE_MAX_ENTRIES'), maxBytes: number('STALE_CACHE_MAX_BYTES'), ttlMs: number('STALE_CACHE_TTL_MS') }),
    mergePool: Object.freeze({
      threads,
      maxQueue: (values.MERGE_POOL_MAX_QUEUE as number | undefined) ?? number('ADMISSION_MAX_LIMIT'),
      inlineMaxBytes: number('MERGE_INLINE_MAX_BYTES'),
      inlineWhenAloneMaxBytes: number('MERGE_INLINE_WHEN_ALONE_MAX_BYTES'),
      maxHeapMb: number('MERGE_POOL_MAX_HEAP_MB')
    }),
    server: Object.freeze({
      maxConnections: number('SERVER_MAX_CONNECTIONS'),
      requestTimeoutMs: number('SERVER_REQUEST_TIMEOUT_MS'),
      headersTimeoutMs: number('SERVER_HEADERS_TIMEOUT_MS'),
      keepAliveTimeoutMs: number('SERVER_KEEP_ALIVE_TIMEOUT_MS')
    }),
    admission: Object.freeze({
      enabled: values.ADMISSION_ENABLED as boolean,
      initialLimit: number('ADMISSION_INITIAL_LIMIT'),
      minLimit: number('ADMISSION_MIN_LIMIT'),
      maxLimit: number('ADMISSION_MAX_LIMIT'),
      maxQueue: number('ADMISSION_MAX_QUEUE'),
      queueTargetMs: number('ADMISSION_QUEUE_TARGET_MS'),
      queueIntervalMs: number('ADMISSION_QUEUE_INTERVAL_MS'),
      latencyTolerance: number('ADMISSION_LATENCY_TOLERANCE')
    }),
    loadShedding: Object.freeze({
      enabled: values.LOAD_SHEDDING_ENABLED as boolean,
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
      port: values.OBSERVABILITY_ON_GATEWAY_PORT === true ? undefined : number('OBSERVABILITY_PORT'),
      host: values.OBSERVABILITY_HOST as string,
      maxDashboardClients: number('DASHBOARD_MAX_CLIENTS'),
      dashboardStreamMaxSeconds: number('DASHBOARD_STREAM_MAX_SECONDS')
    }),
    batch: Object.freeze({
      maxUsers: number('BATCH_MAX_USERS'),
      ioConcurrency: number('BATCH_IO_CONCURRENCY'),
      queueSize: number('BATCH_QUEUE_SIZE'),
      cpuConcurrency: (values.BATCH_CPU_CONCURRENCY as number | undefined) ?? availableParallelism(),
      cpuNiceness: number('BATCH_CPU_NICENESS'),
      onThread: values.BATCH_ON_THREAD as boolean,
      threadNiceness: number('BATCH_THREAD_NICENESS'),
      itemTimeoutMs: number('BATCH_ITEM_TIMEOUT_MS'),
      retries: number('BATCH_RETRIES'),
      deadlineMs: number('BATCH_DEADLINE_MS'),
      maxRunning: number('BATCH_MAX_RUNNING'),
      retainMs: number('BATCH_RETAIN_MS'),
      maxRetained: number('BATCH_MAX_RETAINED'),
      resultsDirectory: (values.BATCH_RESULTS_DIRECTORY as string | undefined) ?? join(tmpdir(), `http-aggregator-batches-${process.pid}`),
      maxResultBytes: number('BATCH_MAX_RESULT_BYTES'),
      distributed: values.BATCH_REDIS_URL === undefined
        ? undefined
        : Object.freeze({
          redisUrl: values.BATCH_REDIS_URL as string,
          globalIoConcurrency: (values.BATCH_GLOBAL_IO_CONCURRENCY as number | undefined) ?? number('BATCH_IO_CONCURRENCY'),
          itemsPerJob: number('BATCH_ITEMS_PER_JOB'),
          gatewayTakesItems: values.BATCH_GATEWAY_TAKES_ITEMS as boolean,
          lockDurationMs: number('BATCH_LOCK_DURATION_MS'),
          stalledIntervalMs: number('BATCH_STALLED_INTERVAL_MS')
        })
    }),
    shutdownTimeoutMs: number('SHUTDOWN_TIMEOUT_MS')
  })
}

/** {@link loadConfig} for a process's entry point: a bad variable is a message on stderr and exit code 1, not a stack. */
export function loadConfigOrExit (): Config {
  try {
    return loadConfig()
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    console.error(error.message)
    process.exit(1)
  }
}

function resilienceConfig (name: string, values: Record<string, unknown>): Pick<UpstreamConfig, 'circuitBreaker' | 'retry' | 'hedge' | 'coalesce'> {
  const value = (suffix: string) => values[upstreamVariable(name, suffix)]
  const number = (suffix: string) => value(suffix) as number
  const share = (suffix: string) => number(suffix) / 100
  return {
    circuitBreaker: Object.freeze({
      enabled: value('CIRCUIT_BREAKER') as boolean,
      failureRate: share('CIRCUIT_FAILURE_RATE'),
      slowCallRate: share('CIRCUIT_SLOW_CALL_RATE'),
      slowCallMs: (value('CIRCUIT_SLOW_CALL_MS') as number | undefined) ?? Math.max(1, Math.round(number('TIMEOUT_MS') * 0.8)),
      windowSize: number('CIRCUIT_WINDOW_SIZE'),
      windowMs: number('CIRCUIT_WINDOW_MS'),
      minimumCalls: number('CIRCUIT_MIN_CALLS'),
      openMs: number('CIRCUIT_OPEN_MS'),
      halfOpenProbes: number('CIRCUIT_HALF_OPEN_PROBES')
    }),
    retry: Object.freeze({
      retries: number('RETRIES'),
      perTryTimeoutMs: number('RETRY_PER_TRY_TIMEOUT_MS'),
      budgetRatio: share('RETRY_BUDGET_PERCENT'),
      budgetMin: number('RETRY_BUDGET_MIN'),
      backoffMs: number('RETRY_BACKOFF_MS')
    }),
    hedge: Object.freeze({ enabled: value('HEDGE') === 'auto', budgetRatio: share('HEDGE_BUDGET_PERCENT') }),
    coalesce: value('COALESCE') as boolean
  }
}
