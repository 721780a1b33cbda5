import { get, type IncomingHttpHeaders } from 'node:http'
import type { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import app from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { registry as builtInRegistry, UPSTREAM_NAMES, upstreamVariable, type UpstreamRegistry } from '../../src/lib/contract/upstreams.js'
import { serverOptions } from '../../src/server-options.js'
import { compiled } from './compiled.js'

// The merge threads run this run's compiled copy of the worker and of the registry module it imports, as in dist/,
// instead of loading tsx (a second or more per thread).
const mergeWorker = { filename: compiled(new URL('../../src/workers/merge-worker.ts', import.meta.url)).href, execArgv: [] }

export type TestGateway = FastifyInstance & { origin: string }

export interface TestGatewayOptions {
  /** Listen on a real socket (127.0.0.1, port 0); otherwise the gateway is only ready for `inject`. */
  listen?: boolean
  registry?: UpstreamRegistry
  /** Where the log lines go, as JSON, at LOG_LEVEL (pass one in `env`); by default nothing is logged. */
  logStream?: Writable
}

/**
 * Builds the real gateway, as `server.ts` does, from environment-style settings. One merge thread per pool and no logs
 * by default (tests about the pools ask for more).
 */
export async function buildGateway (env: Record<string, string>, { listen = false, registry = builtInRegistry, logStream }: TestGatewayOptions = {}): Promise<TestGateway> {
  // Load shedding is off unless a test turns it on: a busy test process would otherwise trip it at random.
  // /metrics and the dashboard on the app itself, for `inject`; test/routes/observability.test.ts checks the default.
  const config = loadConfig({ MERGE_POOL_THREADS: '1', BATCH_CPU_CONCURRENCY: '1', LOG_LEVEL: 'silent', LOAD_SHEDDING_ENABLED: 'false', OBSERVABILITY_ON_GATEWAY_PORT: 'true', ...env }, { ...registry, module: compiled(registry.module).href })
  const options = serverOptions(config, { logger: false })
  const fastify = Fastify(logStream ? { ...options, logger: { level: config.logLevel, stream: logStream } } : options)
  // Unwrapped, as fastify/demo's tests do, so the app's decorators (mergePool, ...) are visible to the test.
  await fastify.register(fp(app), { config, mergeWorker })
  let origin = ''
  if (listen) origin = await fastify.listen({ host: '127.0.0.1', port: 0 })
  else await fastify.ready()
  return Object.assign(fastify as FastifyInstance, { origin })
}

/** A GET over a real socket with the path sent exactly as given (no URL normalisation of `..` or escapes). */
export function rawGet (origin: string, path: string): Promise<{ statusCode: number, headers: IncomingHttpHeaders, body: string }> {
  const { hostname, port } = new URL(origin)
  return new Promise((resolve, reject) => {
    const request = get({ host: hostname, port, path }, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => { body += chunk })
      response.on('end', () => resolve({ statusCode: response.statusCode ?? 0, headers: response.headers, body }))
    })
    request.on('error', reject)
  })
}

/** UPSTREAM_<NAME>_TIMEOUT_MS of `timeoutMs` for each named upstream (every built-in one by default). */
export const upstreamTimeouts = (timeoutMs: number, names: readonly string[] = UPSTREAM_NAMES) =>
  Object.fromEntries(names.map((name) => [upstreamVariable(name, 'TIMEOUT_MS'), String(timeoutMs)]))
