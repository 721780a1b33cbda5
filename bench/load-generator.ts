import autocannon from 'autocannon'
import * as hdr from 'hdr-histogram-js'

// The load generator, run in its own process (forked by bench/lib/load.ts) so it never shares an event loop with what
// it measures. autocannon sends the requests; every response is also recorded here, by status, in HDR histograms in
// microseconds.
//
// Fixed rate: autocannon's overallRate gives each connection a quota per one-second window, sent as soon as the window
// opens (lib/httpClient.js), so N connections at 1 request/s each make one burst of N requests a second, not a rate.
// To offer a steady rate, the load is split over STAGGER instances of autocannon, each with 1/STAGGER of the rate and
// of the connections, started 1000/STAGGER ms apart.
//
// Coordinated omission: at a fixed rate, a response slower than the send interval delays the requests queued behind
// it, and a naive histogram never sees the latency those requests would have had. autocannon corrects for this, but
// with an expected interval of Math.ceil(1 / rate) ms, where rate is requests per second per connection: 1 ms at any
// rate, so each slow response is back-filled with a synthetic sample every millisecond below it (lib/run.js). Here
// the interval is the real one, 1000 / rate ms, as in HdrHistogram's recordValueWithExpectedInterval.

export interface LoadRequest {
  origin: string
  /** Paths requested in turn. */
  paths: string[]
  connections: number
  durationSeconds: number
  /** Requests per second over all connections (open loop); none means as fast as responses allow (closed loop). */
  overallRate?: number
  timeoutSeconds?: number
}

export interface LatencySummary {
  count: number
  p50Ms: number | null
  p90Ms: number | null
  p99Ms: number | null
  maxMs: number | null
}

export interface LoadResult {
  durationSeconds: number
  responses: number
  /** Responses per second. */
  throughput: number
  /** 2xx responses per second. */
  acceptedThroughput: number
  byStatus: Record<string, number>
  errors: number
  timeouts: number
  /** 2xx latency; corrected for coordinated omission when a rate is set. */
  accepted: LatencySummary
  /** 2xx latency as measured, without correction. */
  acceptedMeasured: LatencySummary
  /** 503 latency (shed requests), as measured. */
  shed: LatencySummary
  /** CPU cores the load generator itself used: on a small machine it competes with what it measures. */
  generatorCores: number
}

const newHistogram = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 })

function summarise (histogram: hdr.Histogram): LatencySummary {
  const count = histogram.totalCount
  const at = (percentile: number) => count === 0 ? null : Math.round(histogram.getValueAtPercentile(percentile)) / 1000
  return { count, p50Ms: at(50), p90Ms: at(90), p99Ms: at(99), maxMs: count === 0 ? null : Math.round(histogram.maxValue) / 1000 }
}

const STAGGER = 20

interface Part { connections: number, rate?: number, delayMs: number }

/** How the load is split: one closed-loop instance, or STAGGER fixed-rate ones a fraction of a second apart. */
function parts (request: LoadRequest): Part[] {
  const rate = request.overallRate
  if (!rate) return [{ connections: request.connections, delayMs: 0 }]
  const count = Math.min(STAGGER, Math.max(1, Math.floor(rate)))
  return Array.from({ length: count }, (_, index) => {
    const share = Math.floor(rate / count) + (index < rate % count ? 1 : 0)
    // autocannon gives a connection with a rate share of 0 no limit at all, so never more connections than the rate.
    const connections = Math.max(1, Math.min(share, Math.ceil(request.connections / count)))
    return { connections, rate: share, delayMs: Math.round((index * 1000) / count) }
  })
}

export async function generateLoad (request: LoadRequest): Promise<LoadResult> {
  const accepted = newHistogram()
  const acceptedMeasured = newHistogram()
  const shed = newHistogram()
  let next = 0

  async function runPart ({ connections, rate, delayMs }: Part) {
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    const intervalMicros = rate ? Math.round((1_000_000 * connections) / rate) : 0
    const instance = autocannon({
      url: request.origin,
      connections,
      duration: request.durationSeconds,
      timeout: request.timeoutSeconds ?? 10,
      ...(rate ? { overallRate: rate } : {}),
      requests: [{ method: 'GET', setupRequest: (req: autocannon.Request) => ({ ...req, path: request.paths[next++ % request.paths.length]! }) }]
    // Without a callback autocannon returns its event emitter, made thenable (lib/init.js); its types show only the promise.
    }) as unknown as autocannon.Instance & PromiseLike<autocannon.Result>
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTimeMs: number) => {
      const micros = Math.max(1, Math.round(responseTimeMs * 1000))
      if (statusCode >= 200 && statusCode < 300) {
        acceptedMeasured.recordValue(micros)
        if (intervalMicros > 0) accepted.recordValueWithExpectedInterval(micros, intervalMicros)
        else accepted.recordValue(micros)
      } else if (statusCode === 503) {
        shed.recordValue(micros)
      }
    })
    return await instance
  }

  const cpuBefore = process.cpuUsage()
  const results = await Promise.all(parts(request).map(runPart))
  const cpu = process.cpuUsage(cpuBefore)
  const byStatus: Record<string, number> = {}
  for (const result of results) {
    for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) byStatus[code] = (byStatus[code] ?? 0) + Number(count)
  }
  const durationSeconds = request.durationSeconds
  const responses = Object.values(byStatus).reduce((sum, count) => sum + count, 0)
  const acceptedCount = Object.entries(byStatus).filter(([code]) => code.startsWith('2')).reduce((sum, [, count]) => sum + count, 0)
  return {
    durationSeconds,
    responses,
    throughput: Math.round((responses / durationSeconds) * 10) / 10,
    acceptedThroughput: Math.round((acceptedCount / durationSeconds) * 10) / 10,
    byStatus,
    errors: results.reduce((sum, result) => sum + result.errors, 0),
    timeouts: results.reduce((sum, result) => sum + result.timeouts, 0),
    accepted: summarise(accepted),
    acceptedMeasured: summarise(acceptedMeasured),
    shed: summarise(shed),
    generatorCores: Math.round(((cpu.user + cpu.system) / 1e6 / durationSeconds) * 100) / 100
  }
}

// As a child process: one request in, one result out.
if (process.send) {
  process.once('message', (request: LoadRequest) => {
    generateLoad(request).then(
      (result) => process.send!({ result }, () => process.exit(0)),
      (error: Error) => process.send!({ error: error.message }, () => process.exit(1))
    )
  })
}
