import { BENCH_PORTS, type BenchContext, type Gateway, type ScenarioResult } from '../lib/context.js'
import { ADMISSION_OFF, ADMISSION_ON, countsSince, settle, shedCounts } from '../lib/gateway.js'
import { withCpuHogs } from '../lib/hogs.js'
import { aggregatePaths, runClient, runLoad } from '../lib/load.js'
import { formatSpread, ratio, spread, type Spread } from '../lib/stats.js'
import type { BurstResult, RetryStormResult } from '../clients.js'
import type { LoadResult } from '../load-generator.js'

// 4. Admission (backpressure): the same gateway build twice, admission control and load shedding on (the defaults)
// and off (ADMISSION_ENABLED=false, LOAD_SHEDDING_ENABLED=false). First the capacity, measured closed-loop against
// the gateway with admission off; then, in every round (on/off in ABBA order from round to round):
//   a. 1× capacity at a fixed rate: what admission costs when nothing needs refusing (goodput, accepted p99)
//   b. 4× capacity at a fixed rate, admission on: goodput as a share of capacity, accepted p99 against the 1× figure
//   c. 32 clients re-sending at once on every 503 (they ignore Retry-After): does refusing stay cheap enough that
//      goodput holds?
//   d. 100 aggregates at once on 100 connections, and 100 pipelined on one socket: how many 200s and 503s, and what
//      share of the fan-outs that started (the profile mock's request count) ended in a 200, i.e. work not wasted
//   e. two busy-loop processes on this machine and 20 requests/s: how much a low load is shed when the CPU is taken
//      by someone else (it should not be: the gateway is not the one overloaded)

const CAPACITY_CONNECTIONS = 16
// More connections cost the load generator CPU that the gateway then lacks on a small machine.
const MAX_CONNECTIONS = 500
const OVERLOAD = 4
const STORM_CONNECTIONS = 32
const BURST = 100
const HOGS = 2
const HOG_RATE = 20

type Variant = 'on' | 'off'
interface WithShed<T> { result: T, shedByReason: Record<string, number> }
interface Fanned { result: BurstResult, fanOutsStarted: number, shedByReason: Record<string, number> }
interface Round {
  atCapacity: Record<Variant, WithShed<LoadResult>>
  overload: WithShed<LoadResult>
  storm: Record<Variant, WithShed<RetryStormResult>>
  burst: Record<Variant, Fanned>
  pipeline: Record<Variant, Fanned>
  hogs: WithShed<LoadResult>
}

const ok = (result: LoadResult) => result.byStatus['200'] ?? 0
const shedShare = (result: LoadResult) => {
  const total = result.responses + result.errors + result.timeouts
  return total === 0 ? null : (100 * (result.byStatus['503'] ?? 0)) / total
}

export async function admission (context: BenchContext): Promise<ScenarioResult> {
  await context.mocks.configure({ latencyMs: 20, jitterMs: 5 })
  const on = await context.startGateway(BENCH_PORTS.a, ADMISSION_ON)
  const off = await context.startGateway(BENCH_PORTS.b, ADMISSION_OFF).catch(async (error: unknown) => {
    await on.stop()
    throw error
  })
  const gateways: Record<Variant, Gateway> = { on, off }
  const paths = aggregatePaths()
  const seconds = context.durationSeconds
  // The retry storm and the CPU-hog run need less time to show their effect; shorter keeps the full run in budget.
  const shortSeconds = context.quick ? context.durationSeconds : 5

  /** Runs `run` against `gateway`, with its shed counters by reason over the run; then lets any backlog drain. */
  async function observed<T> (gateway: Gateway, run: () => Promise<T>): Promise<WithShed<T>> {
    const before = await shedCounts(gateway)
    const result = await run()
    await settle(gateway)
    return { result, shedByReason: countsSince(before, await shedCounts(gateway)) }
  }
  const atRate = (gateway: Gateway, rate: number, durationSeconds = seconds) => observed(gateway, () => runLoad({
    origin: gateway.origin, paths, connections: Math.min(MAX_CONNECTIONS, rate), overallRate: rate, durationSeconds, timeoutSeconds: 10
  }))
  async function fanned (gateway: Gateway, kind: 'burst' | 'pipeline', round: number): Promise<Fanned> {
    // Users no other run asked for, so no cache or coalescing of any kind can answer for them.
    const users = aggregatePaths(BURST, `${kind}-${round}-${gateway === gateways.on ? 'on' : 'off'}`)
    const profileBefore = (await context.mocks.stats('profile')).requests
    const { result, shedByReason } = await observed(gateway, () => runClient({ kind, origin: gateway.origin, paths: users, count: BURST, timeoutSeconds: 30 }))
    const fanOutsStarted = (await context.mocks.stats('profile')).requests - profileBefore
    return { result, fanOutsStarted, shedByReason }
  }

  try {
    // Warm-up: JIT, connection pools, merge threads.
    await Promise.all(Object.values(gateways).map((gateway) => runLoad({ origin: gateway.origin, paths, connections: CAPACITY_CONNECTIONS, durationSeconds: Math.min(seconds, 4) })))
    await settle(gateways.off)
    const capacityRun = await runLoad({ origin: gateways.off.origin, paths, connections: CAPACITY_CONNECTIONS, durationSeconds: seconds })
    const capacity = Math.max(10, Math.round(ok(capacityRun) / capacityRun.durationSeconds))
    context.log(`capacity (closed loop, ${CAPACITY_CONNECTIONS} connections, admission off): ${capacity} requests/s`)
    const refusedWhileOff = capacityRun.byStatus['503'] ?? 0
    if (refusedWhileOff > 0) context.log(`warning: with admission off the gateway still answered ${refusedWhileOff} 503s in the capacity run (does it know ADMISSION_ENABLED=false?): capacity is its goodput`)
    await settle(gateways.off)

    const rounds: Round[] = []
    for (let round = 0; round < context.rounds; round++) {
      const order: Variant[] = round % 2 === 0 ? ['on', 'off'] : ['off', 'on']
      const both = async <T> (measure: (variant: Variant) => Promise<T>): Promise<Record<Variant, T>> => {
        const results = {} as Record<Variant, T>
        for (const variant of order) results[variant] = await measure(variant)
        return results
      }
      context.log(`round ${round + 1}: a. 1× = ${capacity}/s`)
      const atCapacity = await both((variant) => atRate(gateways[variant], capacity))
      context.log(`round ${round + 1}: b. ${OVERLOAD}× = ${OVERLOAD * capacity}/s, admission on`)
      const overload = await atRate(gateways.on, OVERLOAD * capacity)
      context.log(`round ${round + 1}: c. ${STORM_CONNECTIONS} clients retrying on 503`)
      const storm = await both((variant) => observed(gateways[variant], () => runClient({
        kind: 'retry-storm', origin: gateways[variant].origin, paths, connections: STORM_CONNECTIONS, durationSeconds: shortSeconds
      })))
      context.log(`round ${round + 1}: d. ${BURST} at once, ${BURST} pipelined`)
      const burst = await both((variant) => fanned(gateways[variant], 'burst', round))
      const pipeline = await both((variant) => fanned(gateways[variant], 'pipeline', round))
      context.log(`round ${round + 1}: e. ${HOGS} CPU hogs, ${HOG_RATE}/s, admission on`)
      const hogs = await withCpuHogs(HOGS, shortSeconds + 30, () => atRate(gateways.on, HOG_RATE, shortSeconds))
      rounds.push({ atCapacity, overload, storm, burst, pipeline, hogs })
    }

    const of = (pick: (round: Round) => number | null | undefined): Spread => spread(rounds.map(pick))
    const perSecond = (run: WithShed<LoadResult>) => ok(run.result) / run.result.durationSeconds
    const percentOfCapacity = (value: number) => (100 * value) / capacity
    const startedToOk = (run: Fanned) => run.fanOutsStarted === 0 ? null : (100 * (run.result.byStatus['200'] ?? 0)) / run.fanOutsStarted
    const causes = (pick: (round: Round) => Record<string, number>) => {
      const total: Record<string, number> = {}
      for (const round of rounds) for (const [reason, count] of Object.entries(pick(round))) total[reason] = (total[reason] ?? 0) + count
      const entries = Object.entries(total)
      return entries.length === 0 ? '–' : entries.map(([reason, count]) => `${reason} ${count}`).join(', ')
    }

    const goodput = {
      atCapacity: { on: of((round) => perSecond(round.atCapacity.on)), off: of((round) => perSecond(round.atCapacity.off)) },
      overload: of((round) => perSecond(round.overload)),
      storm: { on: of((round) => round.storm.on.result.okPerSecond), off: of((round) => round.storm.off.result.okPerSecond) }
    }
    const share = {
      atCapacity: { on: of((round) => percentOfCapacity(perSecond(round.atCapacity.on))), off: of((round) => percentOfCapacity(perSecond(round.atCapacity.off))) },
      overload: of((round) => percentOfCapacity(perSecond(round.overload))),
      storm: { on: of((round) => percentOfCapacity(round.storm.on.result.okPerSecond)), off: of((round) => percentOfCapacity(round.storm.off.result.okPerSecond)) }
    }
    const p99 = {
      atCapacity: { on: of((round) => round.atCapacity.on.result.accepted.p99Ms), off: of((round) => round.atCapacity.off.result.accepted.p99Ms) },
      overload: of((round) => round.overload.result.accepted.p99Ms),
      storm: { on: of((round) => round.storm.on.result.okP99Ms), off: of((round) => round.storm.off.result.okP99Ms) },
      hogs: of((round) => round.hogs.result.accepted.p99Ms)
    }
    const overloadP99Ratio = of((round) => ratio(round.overload.result.accepted.p99Ms, round.atCapacity.on.result.accepted.p99Ms))
    const shedPerSecond = (pick: (round: Round) => LoadResult) => of((round) => (pick(round).byStatus['503'] ?? 0) / pick(round).durationSeconds)
    const stormShed = { on: of((round) => round.storm.on.result.shedPerSecond), off: of((round) => round.storm.off.result.shedPerSecond) }
    const fannedStats = (pick: (round: Round) => Fanned) => ({
      ok: of((round) => pick(round).result.byStatus['200'] ?? 0),
      shed: of((round) => pick(round).result.byStatus['503'] ?? 0),
      other: of((round) => pick(round).result.sent - (pick(round).result.byStatus['200'] ?? 0) - (pick(round).result.byStatus['503'] ?? 0)),
      otherKinds: [...new Set(rounds.flatMap((round) => [
        ...Object.keys(pick(round).result.byStatus).filter((code) => code !== '200' && code !== '503'),
        ...(pick(round).result.noResponse > 0 ? ['no response'] : [])
      ]))].join(', '),
      started: of((round) => pick(round).fanOutsStarted),
      startedToOk: of((round) => startedToOk(pick(round)))
    })
    const burst = { on: fannedStats((round) => round.burst.on), off: fannedStats((round) => round.burst.off) }
    const pipeline = { on: fannedStats((round) => round.pipeline.on), off: fannedStats((round) => round.pipeline.off) }
    const hogsShed = of((round) => shedShare(round.hogs.result))
    const hogsGoodput = of((round) => perSecond(round.hogs))

    const n = (value: Spread, digits = 0) => value.median === null ? '–' : value.median.toFixed(digits)
    const rateRow = (label: string, variant: string, good: Spread, percent: Spread, latency: Spread, shed: Spread, reasons: string) =>
      [label, variant, formatSpread(good, 1), formatSpread(percent, 0, '%'), formatSpread(latency, 0), formatSpread(shed, 1), '', '', reasons]
    const fannedRow = (label: string, variant: Variant, stats: ReturnType<typeof fannedStats>, reasons: string) =>
      [label, variant, formatSpread(stats.ok, 0), '', '', formatSpread(stats.shed, 0), stats.otherKinds ? `${formatSpread(stats.other, 0)} (${stats.otherKinds})` : '0', `${formatSpread(stats.startedToOk, 0, '%')} of ${formatSpread(stats.started, 0)}`, reasons]

    return {
      id: 'admission',
      title: '4. Admission (backpressure): admission control on vs off, from 1× capacity to retry storms and bursts',
      finding: `At 1× capacity (${capacity}/s) admission on serves ${n(share.atCapacity.on)}% of capacity at ${n(p99.atCapacity.on)} ms p99 (off: ${n(share.atCapacity.off)}% at ${n(p99.atCapacity.off)} ms); at ${OVERLOAD}× it still serves ${n(share.overload)}% of capacity at ${n(overloadP99Ratio, 2)}× the 1× p99; ${STORM_CONNECTIONS} clients retrying at once on every 503 get ${n(share.storm.on)}% of capacity with admission (${n(stormShed.on)} 503s/s) against ${n(share.storm.off)}% without; of ${BURST} aggregates at once ${n(burst.on.ok)} got a 200 and ${n(burst.on.shed)} a 503, ${n(burst.on.startedToOk)}% of the fan-outs started ending in a 200 (${n(burst.off.startedToOk)}% with admission off; pipelined on one socket: ${n(pipeline.on.startedToOk)}% vs ${n(pipeline.off.startedToOk)}%); with ${HOGS} CPU hogs on the machine and ${HOG_RATE} requests/s, ${n(hogsShed, 1)}% were shed.`,
      setup: `Upstreams at 20 ± 5 ms. Capacity: closed loop, ${CAPACITY_CONNECTIONS} connections, admission off (${capacity} requests/s). Admission on: the gateway's defaults; off: ADMISSION_ENABLED=false and LOAD_SHEDDING_ENABLED=false. Fixed rates: autocannon overallRate over 20 staggered instances, up to ${MAX_CONNECTIONS} connections, 10 s timeout, accepted latency corrected for coordinated omission. Retry storm: ${STORM_CONNECTIONS} undici connections in a closed loop from their own process, each re-sending the same path at once on a 503 (p99 from a path's first attempt to its 200). Burst: ${BURST} connections opened first, then one GET written on each in the same tick; pipelined: ${BURST} GETs in one write on one socket; fan-outs started = the profile mock's request count over the run (200s / started = work not thrown away). CPU hogs: ${HOGS} busy-loop processes for the run. ${seconds} s per fixed-rate run at 1× and ${OVERLOAD}×, ${shortSeconds} s for the retry storm and the CPU-hog run, ${context.rounds} round(s), on/off in ABBA order; every run is followed by a wait for /health to answer fast again. 503 causes: aggregate_load_shed_total by reason, summed over rounds, from each gateway's observability port. The load generator, the five mocks and the gateways share this machine's cores.`,
      table: {
        headers: ['case', 'admission', '200s (per s, or count)', '200s, % of capacity', 'accepted p99 (ms)', '503s (per s, or count)', 'other outcomes', 'fan-outs started ending in 200', '503 causes (all rounds)'],
        rows: [
          rateRow(`a. 1× capacity, ${capacity}/s offered`, 'on', goodput.atCapacity.on, share.atCapacity.on, p99.atCapacity.on, shedPerSecond((round) => round.atCapacity.on.result), causes((round) => round.atCapacity.on.shedByReason)),
          rateRow(`a. 1× capacity, ${capacity}/s offered`, 'off', goodput.atCapacity.off, share.atCapacity.off, p99.atCapacity.off, shedPerSecond((round) => round.atCapacity.off.result), causes((round) => round.atCapacity.off.shedByReason)),
          rateRow(`b. ${OVERLOAD}× capacity, ${OVERLOAD * capacity}/s offered (p99 ${n(overloadP99Ratio, 2)}× the 1× figure)`, 'on', goodput.overload, share.overload, p99.overload, shedPerSecond((round) => round.overload.result), causes((round) => round.overload.shedByReason)),
          rateRow(`c. ${STORM_CONNECTIONS} clients retrying at once on 503`, 'on', goodput.storm.on, share.storm.on, p99.storm.on, stormShed.on, causes((round) => round.storm.on.shedByReason)),
          rateRow(`c. ${STORM_CONNECTIONS} clients retrying at once on 503`, 'off', goodput.storm.off, share.storm.off, p99.storm.off, stormShed.off, causes((round) => round.storm.off.shedByReason)),
          fannedRow(`d. ${BURST} at once, ${BURST} connections`, 'on', burst.on, causes((round) => round.burst.on.shedByReason)),
          fannedRow(`d. ${BURST} at once, ${BURST} connections`, 'off', burst.off, causes((round) => round.burst.off.shedByReason)),
          fannedRow(`d. ${BURST} pipelined on one socket`, 'on', pipeline.on, causes((round) => round.pipeline.on.shedByReason)),
          fannedRow(`d. ${BURST} pipelined on one socket`, 'off', pipeline.off, causes((round) => round.pipeline.off.shedByReason)),
          [`e. ${HOGS} CPU hogs, ${HOG_RATE}/s offered`, 'on', formatSpread(hogsGoodput, 1), '', formatSpread(p99.hogs, 0), `${formatSpread(hogsShed, 1, '%')} of requests`, '', '', causes((round) => round.hogs.shedByReason)]
        ]
      },
      chart: {
        title: 'Admission: goodput (200s/s) as % of capacity',
        unit: '% of capacity',
        groups: ['1× offered (fixed rate)', `${OVERLOAD}× offered (fixed rate)`, `${STORM_CONNECTIONS} clients retrying on 503`],
        series: [
          { name: 'admission on', values: [share.atCapacity.on, share.overload, share.storm.on] },
          { name: 'admission off', values: [share.atCapacity.off, spread([]), share.storm.off] }
        ],
        references: [{ label: `capacity ${capacity}/s`, value: 100 }]
      },
      data: { capacity, capacityRun, rounds }
    }
  } finally {
    await Promise.all(Object.values(gateways).map((gateway) => gateway.stop()))
  }
}
