import { setTimeout as sleep } from 'node:timers/promises'
import type { Gateway } from './context.js'
import type { Service } from './processes.js'

// What the scenarios read from or do to a gateway besides loading it: its configuration names for admission, its shed
// and merge counters (from the observability port, not the public one) and waiting for a backlog to drain.

/** Admission control and load shedding both off: the gateway serves (or queues) everything it is sent. */
export const ADMISSION_OFF = { ADMISSION_ENABLED: 'false', LOAD_SHEDDING_ENABLED: 'false' } as const
/** Admission on is the gateway's defaults: no variables. */
export const ADMISSION_ON = {} as const

/** The gateway's Prometheus text, from /metrics on its observability port. */
async function metricsText (gateway: Gateway): Promise<string> {
  const response = await fetch(`${gateway.metricsOrigin}/metrics`, { signal: AbortSignal.timeout(5000) })
  if (!response.ok) throw new Error(`${gateway.name}: GET ${gateway.metricsOrigin}/metrics answered ${response.status}`)
  return response.text()
}

/** The values of the given series (name with labels, as /metrics writes them); 0 for a series not there. */
export async function metricValues<Series extends string> (gateway: Gateway, series: readonly Series[]): Promise<Record<Series, number>> {
  const lines = (await metricsText(gateway)).split('\n')
  return Object.fromEntries(series.map((name) => {
    const line = lines.find((candidate) => candidate.startsWith(`${name} `))
    return [name, line === undefined ? 0 : Number(line.slice(name.length + 1))]
  })) as Record<Series, number>
}

/** The gateway's shed counters by reason (aggregate_load_shed_total), from /metrics on its observability port. */
export async function shedCounts (gateway: Gateway): Promise<Record<string, number>> {
  const text = await metricsText(gateway)
  return Object.fromEntries([...text.matchAll(/^aggregate_load_shed_total\{reason="([^"]+)"\} (\d+)/gm)].map(([, reason, count]) => [reason!, Number(count)]))
}

/** Counter increases from `before` to `after`, by reason. */
export function countsSince (before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([reason, count]) => [reason, count - (before[reason] ?? 0)]).filter(([, count]) => count !== 0))
}

/** Waits until GET /health answers quickly again (a backlog from the previous run has drained), then a second more. */
export async function settle (service: Service): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      const startedAt = performance.now()
      await fetch(`${service.origin}/health`, { signal: AbortSignal.timeout(2000) })
      if (performance.now() - startedAt < 20) break
    } catch {}
    await sleep(200)
  }
  await sleep(1000)
}
