import { fork } from 'node:child_process'
import type { BurstResult, ClientRequest, RetryStormResult } from '../clients.js'
import type { LoadRequest, LoadResult } from '../load-generator.js'
import { SCRIPTS } from './processes.js'

/** Forks `script`, sends it one request, returns its one result; the child is killed if it outlives `timeoutMs`. */
function runChild<Result> (script: string, request: unknown, label: string, timeoutMs: number): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = fork(script, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${label}: no result within ${Math.round(timeoutMs / 1000)} s`))
    }, timeoutMs)
    child.once('message', (message: { result?: Result, error?: string }) => {
      clearTimeout(timer)
      if (message.result) resolve(message.result)
      else reject(new Error(`${label}: ${message.error}`))
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      if (code !== 0) reject(new Error(`${label} exited with code ${code}`))
    })
    child.send(request as object)
  })
}

/** Runs one load in a fresh load-generator process (its own event loop) and returns what it measured. */
export function runLoad (request: LoadRequest): Promise<LoadResult> {
  return runChild(SCRIPTS.loadGenerator, request, 'load generator', (request.durationSeconds + (request.timeoutSeconds ?? 10) + 60) * 1000)
}

/** Runs one of the special clients (bench/clients.ts) in a fresh process. */
export function runClient (request: Extract<ClientRequest, { kind: 'retry-storm' }>): Promise<RetryStormResult>
export function runClient (request: Extract<ClientRequest, { kind: 'burst' | 'pipeline' }>): Promise<BurstResult>
export function runClient (request: ClientRequest): Promise<RetryStormResult | BurstResult> {
  const seconds = request.kind === 'retry-storm' ? request.durationSeconds + 20 : (request.timeoutSeconds ?? 30) + 20
  return runChild(SCRIPTS.clients, request, request.kind, seconds * 1000)
}

/** Paths for `users` distinct user ids, so caches see a realistic spread. */
export const aggregatePaths = (users = 200, prefix = 'bench-user') => Array.from({ length: users }, (_, index) => `/aggregate/${prefix}-${index}`)

/**
 * Interactive traffic beside a batch (scenario 13, bench/batch-distributed.ts): GET /aggregate for 200 other users at
 * `rate` a second over `connections`, measured alone and again from `afterMs` into the batch, once it runs at full speed.
 */
export const BESIDE_BATCH = { rate: 20, connections: 10, afterMs: 3000 } as const

/** One window of {@link BESIDE_BATCH} traffic on `origin`. */
export const runBesideBatch = (origin: string, durationSeconds: number) =>
  runLoad({ origin, paths: aggregatePaths(200, 'interactive-user'), connections: BESIDE_BATCH.connections, overallRate: BESIDE_BATCH.rate, durationSeconds })

/** How {@link BESIDE_BATCH} traffic is described in a result's setup. */
export const besideBatchSetup = (durationSeconds: number) =>
  `interactive GET /aggregate for other users at ${BESIDE_BATCH.rate}/s over ${BESIDE_BATCH.connections} connections for ${durationSeconds} s, alone before the batch and again from ${BESIDE_BATCH.afterMs / 1000} s into it`
