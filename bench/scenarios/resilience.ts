import { setTimeout as sleep } from 'node:timers/promises'
import type { MockSettings } from '../../mock-services/settings.js'
import { UPSTREAM_NAMES, upstreamVariable, type BuiltInUpstream as UpstreamName } from '../../src/lib/contract/upstreams.js'
import { alternate, BENCH_PORTS, type BenchContext, type Gateway, type ScenarioResult } from '../lib/context.js'
import { metricValues } from '../lib/gateway.js'
import { aggregatePaths, runLoad } from '../lib/load.js'
import { formatSpread, ratio, spread, type Spread } from '../lib/stats.js'

// 9–12. The per-upstream policies of the call path, each against the same gateway with that policy off, in one run,
// alternating rounds: a circuit breaker on a hanging upstream, retries on transient 503s, hedging on a long tail, and
// coalescing of a burst for one user. Everything is read from outside: the load generator's latencies, the mocks'
// /__stats, and the gateway's /metrics.

const LATENCY_MS: Record<UpstreamName, number> = { profile: 40, orders: 60, recommendations: 60, inventory: 50, loyalty: 60 }
const latencies = (overrides: Partial<Record<UpstreamName, Partial<MockSettings>>> = {}) =>
  Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, { latencyMs: LATENCY_MS[name], ...overrides[name] }]))
const RATE = 50
const CONNECTIONS = 50

const RESPONSES = ['aggregate_responses_total{result="complete"}', 'aggregate_responses_total{result="partial"}', 'aggregate_responses_total{result="failed"}'] as const

async function responseCounts (gateway: Gateway) {
  const values = await metricValues(gateway, RESPONSES)
  return { complete: values[RESPONSES[0]], partial: values[RESPONSES[1]], failed: values[RESPONSES[2]] }
}

const perSecond = (count: number, seconds: number) => Math.round((count / seconds) * 10) / 10
const share = (part: number, whole: number) => whole === 0 ? null : Math.round((part / whole) * 1000) / 10

async function waitFor (check: () => Promise<boolean>, timeoutMs: number): Promise<number | null> {
  const startedAt = performance.now()
  while (performance.now() - startedAt < timeoutMs) {
    if (await check()) return performance.now() - startedAt
    await sleep(50)
  }
  return null
}

/** 9. A hanging optional upstream, with the circuit breaker and without. */
export async function circuitBreaker (context: BenchContext): Promise<ScenarioResult> {
  const OPEN_MS = 2000
  const breakerEnv = { [upstreamVariable('recommendations', 'CIRCUIT_OPEN_MS')]: String(OPEN_MS) }
  const withBreaker = await context.startGateway(BENCH_PORTS.a, breakerEnv)
  const without = await context.startGateway(BENCH_PORTS.b, { [upstreamVariable('recommendations', 'CIRCUIT_BREAKER')]: 'false' })
  const paths = aggregatePaths()
  const openSeries = 'aggregate_circuit_state{upstream="recommendations",state="open"}'
  const closedSeries = 'aggregate_circuit_state{upstream="recommendations",state="closed"}'
  try {
    const load = (gateway: Gateway, seconds = context.durationSeconds) => runLoad({ origin: gateway.origin, paths, connections: CONNECTIONS, overallRate: RATE, durationSeconds: seconds })
    const healthy = async () => {
      await context.mocks.configure({ jitterMs: 0 }, latencies())
      return { ...(await load(withBreaker)), calls: (await context.mocks.stats('recommendations')).requests }
    }
    const hanging = (gateway: Gateway) => async () => {
      await context.mocks.configure({ jitterMs: 0 }, latencies({ recommendations: { mode: 'hang' } }))
      // Until the breaker has opened (at once without one): the rounds measure the state it settles in.
      if (gateway === withBreaker) {
        const opening = load(gateway, 5)
        await waitFor(async () => (await metricValues(gateway, [openSeries]))[openSeries] === 1, 5000)
        await opening
        await context.mocks.resetStats()
      }
      const result = await load(gateway)
      return { ...result, calls: (await context.mocks.stats('recommendations')).requests }
    }
    const results = await alternate(context.rounds, [
      { name: 'healthy', measure: healthy },
      { name: 'breaker', measure: hanging(withBreaker) },
      { name: 'no breaker', measure: hanging(without) }
    ])
    // Heal it under load: how long until the breaker closes by itself.
    await context.mocks.configure({ jitterMs: 0 }, latencies({ recommendations: { mode: 'hang' } }))
    const opening = load(withBreaker, 5)
    await waitFor(async () => (await metricValues(withBreaker, [openSeries]))[openSeries] === 1, 5000)
    await opening
    const healing = load(withBreaker, Math.ceil((3 * OPEN_MS) / 1000) + 1)
    await context.mocks.configure({ jitterMs: 0 }, latencies())
    const closedAfterMs = await waitFor(async () => (await metricValues(withBreaker, [closedSeries]))[closedSeries] === 1, 3 * OPEN_MS)
    await healing

    type Run = typeof results[string][number]
    const of = (name: string, pick: (run: Run) => number | null) => spread(results[name]!.map(pick))
    const p50 = { healthy: of('healthy', (run) => run.accepted.p50Ms), breaker: of('breaker', (run) => run.accepted.p50Ms), none: of('no breaker', (run) => run.accepted.p50Ms) }
    const callsPerSecond = (name: string) => of(name, (run) => perSecond(run.calls, run.durationSeconds))
    const probesPerWait = of('breaker', (run) => Math.round((run.calls / (run.durationSeconds * 1000 / OPEN_MS)) * 100) / 100)
    const row = (label: string, name: string) => [label, formatSpread(of(name, (run) => run.accepted.p50Ms), 0), formatSpread(of(name, (run) => run.accepted.p99Ms), 0), formatSpread(callsPerSecond(name), 1)]
    return {
      id: 'circuit-breaker',
      title: '9. A hanging optional upstream: with a circuit breaker and without',
      finding: `With recommendations hanging, the breaker brings p50 back to ${Math.round(p50.breaker.median ?? 0)} ms (healthy: ${Math.round(p50.healthy.median ?? 0)} ms, ratio ${ratio(p50.breaker.median, p50.healthy.median)}) where without it every request waits for the 200 ms timeout (p50 ${Math.round(p50.none.median ?? 0)} ms); the hanging upstream sees ${formatSpread(probesPerWait, 2)} probe(s) per ${OPEN_MS} ms wait instead of ${formatSpread(callsPerSecond('no breaker'), 0)} calls/s, and the breaker closed ${closedAfterMs === null ? 'not within three waits' : `${Math.round(closedAfterMs)} ms`} after the upstream healed.`,
      setup: `Fixed rate ${RATE}/s, ${CONNECTIONS} connections, ${context.durationSeconds} s per round, ${context.rounds} round(s) each, alternating; upstream latencies ${JSON.stringify(LATENCY_MS)} ms, recommendations hanging (never answers; its timeout is 200 ms). The breaker's round starts once it has opened (5 s of load first); UPSTREAM_RECOMMENDATIONS_CIRCUIT_OPEN_MS=${OPEN_MS}, the other settings default. Calls: the mock's request count over the round. Closing: the upstream healed under the same load, time until /metrics shows the circuit closed.`,
      table: {
        headers: ['', 'p50 (ms)', 'p99 (ms)', 'recommendations calls/s'],
        rows: [row('healthy upstreams', 'healthy'), row('hanging, breaker', 'breaker'), row('hanging, no breaker', 'no breaker')]
      },
      chart: {
        title: 'Hanging upstream: aggregate latency with and without a breaker',
        unit: 'ms',
        groups: ['p50', 'p99'],
        series: [
          { name: 'healthy', values: [p50.healthy, of('healthy', (run) => run.accepted.p99Ms)] },
          { name: 'hanging, breaker', values: [p50.breaker, of('breaker', (run) => run.accepted.p99Ms)] },
          { name: 'hanging, no breaker', values: [p50.none, of('no breaker', (run) => run.accepted.p99Ms)] }
        ]
      },
      data: { results, closedAfterMs }
    }
  } finally {
    await Promise.all([withBreaker.stop(), without.stop()])
  }
}

/** 10. Transient 503s on one optional upstream, with one retry and without; and an upstream that fails everything. */
export async function retries (context: BenchContext): Promise<ScenarioResult> {
  const RETRIES = upstreamVariable('orders', 'RETRIES')
  const BREAKER = upstreamVariable('orders', 'CIRCUIT_BREAKER')
  const withRetries = await context.startGateway(BENCH_PORTS.a)
  const without = await context.startGateway(BENCH_PORTS.b, { [RETRIES]: '0' })
  // The breaker would stop calls to an upstream that fails everything: off, so the budget alone bounds the retries.
  const failingAll = await context.startGateway(BENCH_PORTS.c, { [BREAKER]: 'false' })
  const paths = aggregatePaths()
  const retriesMade = 'aggregate_upstream_retries_total{upstream="orders",result="made"}'
  try {
    const measure = (gateway: Gateway, failureRate: number) => async () => {
      await context.mocks.configure({ jitterMs: 0 }, latencies({ orders: { failureRate, failureStatus: 503 } }))
      const before = { ...(await responseCounts(gateway)), ...(await metricValues(gateway, [retriesMade])) }
      const result = await runLoad({ origin: gateway.origin, paths, connections: CONNECTIONS, overallRate: RATE, durationSeconds: context.durationSeconds })
      const after = { ...(await responseCounts(gateway)), ...(await metricValues(gateway, [retriesMade])) }
      const calls = (await context.mocks.stats('orders')).requests
      // Over the aggregates that were answered: the failed ones are the load generator's own, cut off with their
      // connections when a round ends (autocannon leaves one in flight on each), which no policy could complete.
      const answered = after.complete + after.partial - before.complete - before.partial
      const retried = after[retriesMade] - before[retriesMade]
      return { ...result, completeShare: share(after.complete - before.complete, answered), retryShare: share(retried, calls), retried, calls }
    }
    const results = await alternate(context.rounds, [
      { name: 'retries', measure: measure(withRetries, 0.2) },
      { name: 'no retries', measure: measure(without, 0.2) },
      { name: 'failing all', measure: measure(failingAll, 1) }
    ])
    type Run = typeof results[string][number]
    const of = (name: string, pick: (run: Run) => number | null) => spread(results[name]!.map(pick))
    const complete = { retries: of('retries', (run) => run.completeShare), none: of('no retries', (run) => run.completeShare) }
    const retryShare = { retries: of('retries', (run) => run.retryShare), failing: of('failing all', (run) => run.retryShare) }
    const row = (label: string, name: string) => [label, formatSpread(of(name, (run) => run.completeShare), 1, '%'), formatSpread(of(name, (run) => run.retryShare), 1, '%'), formatSpread(of(name, (run) => run.accepted.p50Ms), 0), formatSpread(of(name, (run) => run.accepted.p99Ms), 0)]
    return {
      id: 'retries',
      title: '10. Transient 503s on one upstream: one retry within a budget, and none',
      finding: `With 20% of orders calls answering 503, one retry makes ${formatSpread(complete.retries, 1, '%')} of responses complete (${formatSpread(complete.none, 1, '%')} without), with retries ${formatSpread(retryShare.retries, 1, '%')} of orders calls; with every call failing, the budget holds retries to ${formatSpread(retryShare.failing, 1, '%')} of calls (20% of calls plus 3 per 10 s). With independent failures one retry can at best reach 1 − 0.2² = 96% complete.`,
      setup: `Fixed rate ${RATE}/s, ${CONNECTIONS} connections, ${context.durationSeconds} s per round, ${context.rounds} round(s) each, alternating; upstream latencies ${JSON.stringify(LATENCY_MS)} ms; orders answers 503 with probability 0.2 (or 1 in the last row, breaker off). Complete: aggregate_responses_total{result="complete"} over complete + partial in the round (the failed ones are requests the load generator cut off at the end of the round, one per connection); retries: aggregate_upstream_retries_total{result="made"} over the orders mock's request count.`,
      table: {
        headers: ['', 'complete responses', 'retries / orders calls', 'p50 (ms)', 'p99 (ms)'],
        rows: [row('20% 503s, one retry', 'retries'), row('20% 503s, no retry', 'no retries'), row('100% 503s, one retry, breaker off', 'failing all')]
      },
      chart: {
        title: 'Transient 503s: complete responses and retry share',
        unit: '%',
        groups: ['complete responses', 'retries / calls'],
        series: [
          { name: 'one retry', values: [complete.retries, retryShare.retries] },
          { name: 'no retry', values: [complete.none, spread([0])] },
          { name: 'failing all, one retry', values: [of('failing all', (run) => run.completeShare), retryShare.failing] }
        ]
      },
      data: results
    }
  } finally {
    await Promise.all([withRetries.stop(), without.stop(), failingAll.stop()])
  }
}

/** 11. A long tail on one upstream (5% of calls at 10× latency), with hedging and without. */
export async function hedging (context: BenchContext): Promise<ScenarioResult> {
  const TAIL = { latencyMs: 20, tailRate: 0.05, tailLatencyMs: 200 }
  // A roomy timeout, so the tail is slow rather than failed.
  const env = { [upstreamVariable('recommendations', 'TIMEOUT_MS')]: '280' }
  const hedged = await context.startGateway(BENCH_PORTS.a, { ...env, [upstreamVariable('recommendations', 'HEDGE')]: 'auto' })
  const plain = await context.startGateway(BENCH_PORTS.b, env)
  const paths = aggregatePaths()
  const rate = RATE * 2
  const hedgesWon = 'aggregate_upstream_hedges_total{upstream="recommendations",result="won"}'
  const hedgesLost = 'aggregate_upstream_hedges_total{upstream="recommendations",result="lost"}'
  try {
    const measure = (gateway: Gateway) => async () => {
      await context.mocks.configure({ jitterMs: 0 }, latencies({ profile: { latencyMs: 15 }, orders: { latencyMs: 15 }, inventory: { latencyMs: 15 }, loyalty: { latencyMs: 15 }, recommendations: TAIL }))
      const before = await metricValues(gateway, [hedgesWon, hedgesLost])
      const result = await runLoad({ origin: gateway.origin, paths, connections: CONNECTIONS, overallRate: rate, durationSeconds: context.durationSeconds })
      const after = await metricValues(gateway, [hedgesWon, hedgesLost])
      const stats = await context.mocks.stats('recommendations')
      const hedges = after[hedgesWon] + after[hedgesLost] - before[hedgesWon] - before[hedgesLost]
      // Extra calls: hedges over the calls that would have been made without them (coalescing makes these fewer than
      // the aggregates answered).
      return { ...result, extraShare: share(hedges, stats.requests - hedges), aborted: stats.aborted }
    }
    const results = await alternate(context.rounds, [{ name: 'hedging', measure: measure(hedged) }, { name: 'no hedging', measure: measure(plain) }])
    type Run = typeof results[string][number]
    const of = (name: string, pick: (run: Run) => number | null) => spread(results[name]!.map(pick))
    const p99 = { hedged: of('hedging', (run) => run.accepted.p99Ms), plain: of('no hedging', (run) => run.accepted.p99Ms) }
    const row = (label: string, name: string) => [label, formatSpread(of(name, (run) => run.accepted.p50Ms), 0), formatSpread(of(name, (run) => run.accepted.p99Ms), 0), formatSpread(of(name, (run) => run.extraShare), 1, '%'), formatSpread(of(name, (run) => run.aborted), 0)]
    return {
      id: 'hedging',
      title: '11. A long tail on one upstream: hedging on the p95, and none',
      finding: `With 5% of recommendations calls at 10× latency, hedging brings p99 from ${Math.round(p99.plain.median ?? 0)} ms to ${Math.round(p99.hedged.median ?? 0)} ms (ratio ${ratio(p99.hedged.median, p99.plain.median)}) for ${formatSpread(of('hedging', (run) => run.extraShare), 1, '%')} extra calls; the losing requests are aborted at the upstream.`,
      setup: `Fixed rate ${rate}/s, ${CONNECTIONS} connections, ${context.durationSeconds} s per round, ${context.rounds} round(s) each, alternating; other upstreams 15 ms, recommendations ${TAIL.latencyMs} ms with ${TAIL.tailRate * 100}% of calls at ${TAIL.tailLatencyMs} ms, UPSTREAM_RECOMMENDATIONS_TIMEOUT_MS=280 on both, UPSTREAM_RECOMMENDATIONS_HEDGE=auto on one. Extra calls: hedges sent (aggregate_upstream_hedges_total) over the other requests the mock received; aborted: the mock's count of requests whose caller left.`,
      table: {
        headers: ['', 'p50 (ms)', 'p99 (ms)', 'extra recommendations calls', 'aborted at the upstream'],
        rows: [row('hedging', 'hedging'), row('no hedging', 'no hedging')]
      },
      chart: {
        title: 'Long tail: latency with and without hedging',
        unit: 'ms',
        groups: ['p50', 'p99'],
        series: [
          { name: 'hedging', values: [of('hedging', (run) => run.accepted.p50Ms), p99.hedged] },
          { name: 'no hedging', values: [of('no hedging', (run) => run.accepted.p50Ms), p99.plain] }
        ],
        references: [{ label: `tail ${TAIL.tailLatencyMs} ms`, value: TAIL.tailLatencyMs }]
      },
      data: results
    }
  } finally {
    await Promise.all([hedged.stop(), plain.stop()])
  }
}

/** 12. Bursts of 50 concurrent aggregates for one user, with coalescing and without; a few callers leave early. */
export async function coalescing (context: BenchContext): Promise<ScenarioResult> {
  const BURST = 50
  const LEAVING = 5
  const bursts = context.quick ? 3 : 10
  const coalesced = await context.startGateway(BENCH_PORTS.a)
  const separate = await context.startGateway(BENCH_PORTS.b, Object.fromEntries(UPSTREAM_NAMES.map((name) => [upstreamVariable(name, 'COALESCE'), 'false'])))
  try {
    const measure = (gateway: Gateway) => async () => {
      await context.mocks.configure({ jitterMs: 0 }, latencies())
      const callsPerBurst: number[] = []
      let ok = 0
      let shed = 0
      let failed = 0
      for (let burst = 0; burst < bursts; burst++) {
        await context.mocks.resetStats()
        const userId = `burst-${gateway.origin.slice(-4)}-${burst}-${Date.now()}`
        const leaving = Array.from({ length: LEAVING }, () => new AbortController())
        const requests = Array.from({ length: BURST }, (_, index) => fetch(`${gateway.origin}/aggregate/${userId}`, { signal: leaving[index]?.signal }).then(async (response) => {
          await response.arrayBuffer()
          return response.status
        }, () => 'left'))
        await sleep(10)
        for (const controller of leaving) controller.abort()
        for (const status of await Promise.all(requests)) {
          if (status === 200) ok++
          else if (status === 503) shed++
          else if (status !== 'left') failed++
        }
        const stats = await Promise.all(UPSTREAM_NAMES.map((name) => context.mocks.stats(name)))
        callsPerBurst.push(Math.max(...stats.map((upstream) => upstream.requests)))
      }
      return { maxCalls: Math.max(...callsPerBurst), meanCalls: callsPerBurst.reduce((sum, calls) => sum + calls, 0) / callsPerBurst.length, okShare: share(ok, bursts * (BURST - LEAVING)), shedShare: share(shed, bursts * (BURST - LEAVING)), failed }
    }
    const results = await alternate(context.rounds, [{ name: 'coalescing', measure: measure(coalesced) }, { name: 'no coalescing', measure: measure(separate) }])
    type Run = typeof results[string][number]
    const of = (name: string, pick: (run: Run) => number | null): Spread => spread(results[name]!.map(pick))
    const row = (label: string, name: string) => [
      label, formatSpread(of(name, (run) => run.meanCalls), 1), formatSpread(of(name, (run) => run.maxCalls), 0),
      formatSpread(of(name, (run) => run.okShare), 1, '%'), formatSpread(of(name, (run) => run.shedShare), 1, '%'), formatSpread(of(name, (run) => run.failed), 0)
    ]
    return {
      id: 'coalescing',
      title: '12. Fifty concurrent aggregates for one user: coalesced and not',
      finding: `A burst of ${BURST} concurrent aggregates for one user makes at most ${formatSpread(of('coalescing', (run) => run.maxCalls), 0)} call(s) to any upstream with coalescing, against ${formatSpread(of('no coalescing', (run) => run.maxCalls), 0)} without; the ${LEAVING} callers that leave early fail none of the others (${formatSpread(of('coalescing', (run) => run.failed), 0)} failed; ${formatSpread(of('coalescing', (run) => run.okShare), 1, '%')} got 200 and the rest a 503 from admission, which bounds aggregates in flight).`,
      setup: `${bursts} bursts per round of ${BURST} concurrent GETs for a fresh user id, ${LEAVING} of them aborted by their client after 10 ms; upstream latencies ${JSON.stringify(LATENCY_MS)} ms; gateway defaults (admission on), COALESCE=false for every upstream on one. Calls: the highest request count of the five mocks per burst.`,
      table: {
        headers: ['', 'calls per upstream per burst (mean)', 'max', 'stayers: 200', 'stayers: 503 (admission)', 'stayers failed'],
        rows: [row('coalescing', 'coalescing'), row('no coalescing', 'no coalescing')]
      },
      chart: {
        title: 'Burst of 50 for one user: calls per upstream',
        unit: 'calls',
        groups: ['mean', 'max'],
        series: [
          { name: 'coalescing', values: [of('coalescing', (run) => run.meanCalls), of('coalescing', (run) => run.maxCalls)] },
          { name: 'no coalescing', values: [of('no coalescing', (run) => run.meanCalls), of('no coalescing', (run) => run.maxCalls)] }
        ]
      },
      data: results
    }
  } finally {
    await Promise.all([coalesced.stop(), separate.stop()])
  }
}
