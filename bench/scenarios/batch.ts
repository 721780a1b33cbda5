import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { UPSTREAM_NAMES } from '../../src/lib/contract/upstreams.js'
import { BENCH_PORTS, type BenchContext, type Gateway, type ScenarioResult } from '../lib/context.js'
import { metricValues } from '../lib/gateway.js'
import { watchPeakRss } from '../lib/processes.js'
import { BESIDE_BATCH, besideBatchSetup, runBesideBatch } from '../lib/load.js'
import { ratio, spread } from '../lib/stats.js'

// 13. A batch of 10,000 users with every upstream at 100 ms: stage 1 holds 50 items in flight, so the physical limit is
// 10,000 × 100 ms / 50 = 20 s, and the merges (stage 2, on the worker pool) must hide under it. Against the floor (the
// least a two-stage pipeline can do, the same batch on the same machine and mocks), and a serial loop and an unbounded
// Promise.all over the naive baseline, both measured on fewer users and extrapolated (marked).

const LATENCY_MS = 100
const IO_CONCURRENCY = 50
// The gateway's default BATCH_CPU_NICENESS: its batch merge threads are the ones at this niceness.
const BATCH_CPU_NICENESS = 10

interface Sample { at: number, io: number, queue: number, cpu: number, itemsPerSecond: number }

/**
 * Runs `window` while reading the gateway's event-loop delay (the p99 of each second, from /metrics) once a second:
 * an interactive request waits that long whenever the loop is busy with a batch. Returns the window's result and the
 * mean and largest of those readings in milliseconds (null if none came back).
 */
async function withLoopDelay<T> (gateway: Gateway, window: () => Promise<T>): Promise<T & { loopDelayP99Ms: { mean: number, max: number } | null }> {
  const readings: number[] = []
  const timer = setInterval(() => {
    metricValues(gateway, ['aggregate_event_loop_delay_p99_seconds']).then(
      (values) => { readings.push(values.aggregate_event_loop_delay_p99_seconds * 1000) },
      () => {}
    )
  }, 1000)
  try {
    const result = await window()
    const loopDelayP99Ms = readings.length === 0 ? null : { mean: readings.reduce((sum, value) => sum + value, 0) / readings.length, max: Math.max(...readings) }
    return { ...result, loopDelayP99Ms }
  } finally {
    clearInterval(timer)
  }
}

export async function batch (context: BenchContext): Promise<ScenarioResult> {
  const users = context.quick ? 1000 : 10_000
  const limitSeconds = (users * LATENCY_MS) / IO_CONCURRENCY / 1000
  await context.mocks.configure({ jitterMs: 0, latencyMs: LATENCY_MS })
  const gateway = await context.startGateway(BENCH_PORTS.a)
  const naive = await context.startBaseline('naiveBaseline', BENCH_PORTS.b)
  const floor = await context.startBaseline('floorBaseline', BENCH_PORTS.c)
  try {
    // Interactive traffic at a modest fixed rate, alone and then while the batch runs: its p99 should barely move.
    const interactive = (origin: string) => runBesideBatch(origin, context.durationSeconds)
    // The mocks count every call: the batch's own peak is read outside the window where interactive calls add to it.
    const peakInFlight = async () => Math.max(...(await Promise.all(UPSTREAM_NAMES.map((name) => context.mocks.stats(name)))).map((upstream) => upstream.maxInFlight))
    const mocksCpuSeconds = () => {
      const mocks = context.mocks.services.map((mock) => mock.cpuSeconds())
      return mocks.includes(null) ? null : mocks.reduce((sum, seconds) => sum! + seconds!, 0)
    }
    // Milliseconds of CPU per item from two readings of CPU seconds; null where /proc is not available.
    const perItem = (before: number | null, after: number | null) => before === null || after === null ? null : ((after - before) * 1000) / users
    const ms = (value: number | null) => value === null ? '?' : value.toFixed(2)

    await interactive(gateway.origin)
    const alone = await withLoopDelay(gateway, () => interactive(gateway.origin))
    await context.mocks.resetStats()
    const stopWatching = watchPeakRss(gateway)
    const rssBefore = gateway.rssBytes()
    // CPU time of every process over the batch (the interactive window's requests included): where an item's CPU goes.
    const cpuNow = () => ({
      gateway: gateway.cpuSeconds(),
      eventLoop: gateway.mainThreadCpuSeconds(),
      batchMerges: gateway.niceThreadsCpuSeconds(BATCH_CPU_NICENESS),
      mocks: mocksCpuSeconds()
    })
    const cpuBefore = cpuNow()
    const startedAt = performance.now()
    const created = await fetch(`${gateway.origin}/batches`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userIds: Array.from({ length: users }, (_, index) => `batch-user-${index}`) })
    })
    const { id } = await created.json() as { id: string }
    // Read the results as a client would, while the batch runs: as a stream, counting lines, not as one 40 MB string
    // (fetch's text() took about twice the CPU, on the two cores the batch runs on).
    const reading = request(`${gateway.origin}/batches/${id}/results`).then(async ({ body }) => {
      let lines = 0
      for await (const chunk of body as AsyncIterable<Buffer>) for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++
      return lines
    })
    await sleep(BESIDE_BATCH.afterMs)
    const rampPeak = await peakInFlight()
    const during = await withLoopDelay(gateway, () => interactive(gateway.origin))
    await context.mocks.resetStats()
    const lines = await reading
    const view = await (await fetch(`${gateway.origin}/batches/${id}`)).json() as { status: string, done: number, ok: number, partial: number, failed: number, retried: number, durationMs: number }
    const wallSeconds = (performance.now() - startedAt) / 1000
    const cpuAfter = cpuNow()
    const cpuPerItem = {
      gateway: perItem(cpuBefore.gateway, cpuAfter.gateway),
      eventLoop: perItem(cpuBefore.eventLoop, cpuAfter.eventLoop),
      batchMerges: perItem(cpuBefore.batchMerges, cpuAfter.batchMerges),
      mocks: perItem(cpuBefore.mocks, cpuAfter.mocks)
    }
    const { gateway: gatewayCpu, eventLoop, batchMerges } = cpuPerItem
    const restCpu = gatewayCpu === null || eventLoop === null || batchMerges === null ? null : gatewayCpu - eventLoop - batchMerges
    const peakRss = stopWatching()
    const snapshot = await (await fetch(`${gateway.metricsOrigin}/dashboard/snapshot`)).json() as { batches: Array<{ id: string, samples: Sample[] }> }
    const samples = snapshot.batches.find((candidate) => candidate.id === id)?.samples ?? []
    const maxInFlight = Math.max(rampPeak, await peakInFlight())

    // The floor (bench/baselines/batch-floor.ts): the same batch through the least a two-stage pipeline can do, on the
    // same mocks, with the same interactive traffic sent to the floor aggregator alone and from the same moment of its batch.
    await sleep(500)
    await interactive(floor.origin)
    const floorAlone = await interactive(floor.origin)
    const floorCpuBefore = { floor: floor.cpuSeconds(), mocks: mocksCpuSeconds() }
    const floorRun = fetch(`${floor.origin}/batch?users=${users}`, { method: 'POST', signal: AbortSignal.timeout(10 * 60_000) }).then(async (response) => {
      if (!response.ok) throw new Error(`the floor's batch failed: ${await response.text()}`)
      return await response.json() as { wallSeconds: number }
    })
    await sleep(BESIDE_BATCH.afterMs)
    const floorDuring = await interactive(floor.origin)
    const { wallSeconds: floorSeconds } = await floorRun
    const floorCpuPerItem = { floor: perItem(floorCpuBefore.floor, floor.cpuSeconds()), mocks: perItem(floorCpuBefore.mocks, mocksCpuSeconds()) }

    // Baselines on the naive aggregator (Promise.all over the five calls, no limits): a serial loop over 20 users, and
    // all of 1,000 users at once; each extrapolated to the batch's size. The mocks keep the batch's settings.
    await context.mocks.resetStats()
    const serialUsers = 20
    const serialStartedAt = performance.now()
    for (let index = 0; index < serialUsers; index++) await (await fetch(`${naive.origin}/aggregate/serial-user-${index}`)).arrayBuffer()
    const serialSeconds = ((performance.now() - serialStartedAt) / 1000) * (users / serialUsers)
    await sleep(500)
    await context.mocks.resetStats()
    const floodUsers = Math.min(1000, users)
    const floodStartedAt = performance.now()
    const flood = await Promise.all(Array.from({ length: floodUsers }, (_, index) => fetch(`${naive.origin}/aggregate/flood-user-${index}`, { signal: AbortSignal.timeout(60_000) }).then(async (response) => {
      await response.arrayBuffer()
      return response.status
    }, () => 0)))
    const floodSeconds = (performance.now() - floodStartedAt) / 1000
    const floodInFlight = await peakInFlight()

    const mean = (key: 'io' | 'queue' | 'cpu') => samples.length === 0 ? null : Math.round((samples.reduce((sum, sample) => sum + sample[key], 0) / samples.length) * 100)
    // Ten slices of the run, each the mean utilisation of its samples: the chart shows the stages over time.
    const slices = 10
    const slice = (key: 'io' | 'queue' | 'cpu') => Array.from({ length: slices }, (_, index) => {
      const part = samples.slice(Math.floor((index * samples.length) / slices), Math.floor(((index + 1) * samples.length) / slices))
      return spread([part.length === 0 ? null : Math.round((part.reduce((sum, sample) => sum + sample[key], 0) / part.length) * 100)])
    })
    const MiB = 1024 * 1024
    const loopDelay = ({ loopDelayP99Ms }: { loopDelayP99Ms: { mean: number, max: number } | null }) => loopDelayP99Ms === null ? '?' : `${loopDelayP99Ms.mean.toFixed(1)} (at most ${loopDelayP99Ms.max.toFixed(1)})`
    return {
      id: 'batch',
      title: `13. A batch of ${users.toLocaleString('en')} users at ${LATENCY_MS} ms: the two-stage pipeline against its physical limit`,
      finding: `${users.toLocaleString('en')} users finished (${view.status}) in ${wallSeconds.toFixed(1)} s against a limit of ${limitSeconds.toFixed(0)} s (${(wallSeconds / limitSeconds).toFixed(2)}×), never more than ${maxInFlight} batch calls in flight on any upstream, peak RSS ${peakRss === null ? '?' : Math.round(peakRss / MiB)} MiB; a serial loop would take about ${Math.round(serialSeconds)} s (extrapolated), and the unbounded Promise.all of ${floodUsers.toLocaleString('en')} users put ${floodInFlight} calls in flight on one upstream at once. Interactive /aggregate at ${BESIDE_BATCH.rate}/s: p99 ${Math.round(alone.accepted.p99Ms ?? 0)} ms alone, ${Math.round(during.accepted.p99Ms ?? 0)} ms during the batch (${ratio(during.accepted.p99Ms, alone.accepted.p99Ms)}×), ${during.acceptedThroughput === during.throughput ? 'none' : 'some'} shed; the gateway's event-loop delay p99, read each second, averaged ${loopDelay(alone)} ms alone and ${loopDelay(during)} ms during the batch. CPU per item: the gateway ${ms(cpuPerItem.gateway)} ms (event loop ${ms(cpuPerItem.eventLoop)}, batch merge threads ${ms(cpuPerItem.batchMerges)}, the rest (the batch thread, garbage collection, the interactive pool) ${ms(restCpu)}), the five mocks ${ms(cpuPerItem.mocks)} ms. The floor, the least a two-stage pipeline can do for the same batch on the same mocks, took ${floorSeconds.toFixed(1)} s (${(floorSeconds / limitSeconds).toFixed(2)}× the limit; the gateway took ${ratio(wallSeconds, floorSeconds)}× the floor), ${ms(floorCpuPerItem.floor)} ms of CPU per item and the mocks ${ms(floorCpuPerItem.mocks)}; interactive p99 on the floor aggregator ${Math.round(floorAlone.accepted.p99Ms ?? 0)} ms alone, ${Math.round(floorDuring.accepted.p99Ms ?? 0)} ms during its batch (${ratio(floorDuring.accepted.p99Ms, floorAlone.accepted.p99Ms)}×).`,
      setup: `Every upstream at ${LATENCY_MS} ms, no jitter; gateway defaults (BATCH_IO_CONCURRENCY ${IO_CONCURRENCY}, BATCH_QUEUE_SIZE 100, the batch's stages on a thread of their own unless BATCH_ON_THREAD=false is in the benchmark's environment (here ${process.env.BATCH_ON_THREAD === 'false' ? 'false' : 'the default, true'}), batch merges on their own pool, one thread per core at niceness 10), results read as NDJSON while the batch runs; ${besideBatchSetup(context.durationSeconds)}; the batch's calls in flight are the mocks' peaks before and after that window. Stage utilisation from the gateway's dashboard snapshot (twice a second). CPU per item: each process's CPU time from /proc over the batch (the interactive window's requests included), the batch merge threads being the gateway's threads at niceness ${BATCH_CPU_NICENESS}. The floor: bench/baselines/batch-floor.ts in the floor aggregator's process (bench/baselines/floor.ts), p-limit at ${IO_CONCURRENCY} users in flight, each user's bodies merged on a piscina pool of one thread per core with no bound on its queue, lines appended to a file; no ramp-up, deadline, retry, circuit or priority; measured after the gateway, with the same interactive traffic sent to the floor aggregator. Baselines on bench/baselines/naive.ts: a serial loop over ${serialUsers} users and a Promise.all of ${floodUsers} users, both EXTRAPOLATED to ${users.toLocaleString('en')} by their per-user time.`,
      table: {
        headers: ['', 'wall time (s)', '× limit', 'results', 'ok / partial / failed', 'max calls in flight per upstream', 'mean utilisation io / queue / cpu', 'peak RSS (MiB)'],
        rows: [
          ['batch (in process)', wallSeconds.toFixed(1), (wallSeconds / limitSeconds).toFixed(2), String(lines), `${view.ok} / ${view.partial} / ${view.failed}`, String(maxInFlight), `${mean('io')}% / ${mean('queue')}% / ${mean('cpu')}%`, peakRss === null ? '?' : String(Math.round(peakRss / MiB))],
          ['floor: minimal two-stage pipeline (same batch, same mocks)', floorSeconds.toFixed(1), (floorSeconds / limitSeconds).toFixed(2), '–', '–', '–', '–', '–'],
          ['serial loop (extrapolated)', serialSeconds.toFixed(0), (serialSeconds / limitSeconds).toFixed(1), '–', '–', '5', '–', '–'],
          [`unbounded Promise.all (${floodUsers} users measured, extrapolated)`, ((floodSeconds * users) / floodUsers).toFixed(1), (((floodSeconds * users) / floodUsers) / limitSeconds).toFixed(1), `${flood.filter((status) => status === 200).length} / ${floodUsers} ok`, '–', String(floodInFlight), '–', '–']
        ]
      },
      chart: {
        title: 'Batch: stage utilisation over the run (% of each stage\'s limit, ten slices)',
        unit: '%',
        groups: Array.from({ length: slices }, (_, index) => `${index * 10}–${(index + 1) * 10}%`),
        series: [
          { name: 'stage 1 (fetching)', values: slice('io') },
          { name: 'queue', values: slice('queue') },
          { name: 'stage 2 (merging)', values: slice('cpu') }
        ]
      },
      data: { view, interactive: { alone, during }, cpuPerItem, floor: { wallSeconds: floorSeconds, cpuPerItem: floorCpuPerItem, interactive: { alone: floorAlone, during: floorDuring } }, wallSeconds, limitSeconds, samples, rssBefore, peakRss, serialSeconds, floodSeconds, floodUsers, floodInFlight }
    }
  } finally {
    await Promise.all([gateway.stop(), naive.stop(), floor.stop()])
  }
}
