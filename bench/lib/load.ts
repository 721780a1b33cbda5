import { fork } from 'node:child_process'
import type { LoadRequest, LoadResult } from '../load-generator.js'
import { SCRIPTS } from './processes.js'

/** Runs one load in a fresh load-generator process (its own event loop) and returns what it measured. */
export function runLoad (request: LoadRequest): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = fork(SCRIPTS.loadGenerator, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    child.once('message', (message: { result?: LoadResult, error?: string }) => {
      if (message.result) resolve(message.result)
      else reject(new Error(`load generator: ${message.error}`))
    })
    child.once('exit', (code) => { if (code !== 0) reject(new Error(`load generator exited with code ${code}`)) })
    child.send(request)
  })
}

/** Paths for `users` distinct user ids, so caches see a realistic spread. */
export const aggregatePaths = (users = 200) => Array.from({ length: users }, (_, index) => `/aggregate/bench-user-${index}`)
