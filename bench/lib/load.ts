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
