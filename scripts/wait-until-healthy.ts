import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Polls `url` until it answers 2xx. `stillWorthIt` is asked before each retry: it ends the wait early (returning
 * false) or throws, e.g. when the process being waited for has exited. Used by `npm start` and the benchmark.
 */
export async function waitUntilHealthy (url: string, { timeoutMs, stillWorthIt = () => true }: { timeoutMs: number, stillWorthIt?: () => boolean }): Promise<boolean> {
  const giveUpAt = Date.now() + timeoutMs
  while (Date.now() < giveUpAt) {
    if (!stillWorthIt()) return false
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(1000) })).ok) return true
    } catch {}
    await sleep(100)
  }
  throw new Error(`${url} did not become healthy within ${timeoutMs / 1000} s`)
}
