import { parentPort, workerData } from 'node:worker_threads'
import { pino } from 'pino'
import { createAggregation } from './aggregation.js'
import { loadConfig } from './config.js'
import { channels, type MergeMessage } from './lib/contract/events.js'
import type { UpstreamRegistry } from './lib/contract/upstreams.js'
import { runStagesHere } from './lib/batch/batches.js'
import type { BatchThreadData, FromBatchThread, ToBatchThread } from './workers/batch-thread-runner.js'
import { lowerThisThreadsPriority } from './workers/thread-priority.js'

// A thread that runs batches' two stages for the gateway (BATCH_ON_THREAD): its own event loop, heap, upstream clients
// and batch merge pool, built from the gateway's own settings, so a batch's calls and garbage stay off the event loop
// that serves interactive requests. Each line goes to the main thread, which writes the result file.

const { variables, registryModule, mergeWorker, workCounters } = workerData as BatchThreadData
const { registry } = await import(registryModule) as { registry: UpstreamRegistry }
const config = loadConfig(variables, { ...registry, module: registryModule })
// Below the event loop that serves interactive requests, above the batch's merges (BATCH_THREAD_NICENESS).
lowerThisThreadsPriority(config.batch.threadNiceness)
// Its circuit breakers are its own: their changes are logged marked as the batch thread's.
const logger = pino({ level: config.logLevel }).child({ thread: 'batch' })
const aggregation = await createAggregation(config, logger, { mergeWorker, interactive: false, workCounters })
const runStages = runStagesHere(aggregation.aggregator, config.batch)
const port = parentPort!
// Lines posted and not yet written by the main thread: at most this many wait in the port for one batch.
const MAX_UNWRITTEN_LINES = 256
const runs = new Map<string, { controller: AbortController, written: () => void }>()

const send = (message: FromBatchThread) => port.postMessage(message)

// The thread's merges, for the gateway's merge wait and run histograms: sent in bunches (every 100 ms while a batch
// runs, at its end, or when 1000 wait), republished on the gateway's own channel.
let merges: MergeMessage[] = []
const sendMerges = () => {
  if (merges.length === 0) return
  send({ type: 'merges', merges })
  merges = []
}
channels.merge.subscribe((message) => {
  merges.push(message as MergeMessage)
  if (merges.length >= 1000) sendMerges()
})

port.on('message', (message: ToBatchThread) => {
  if (message.type === 'run') start(message.id, message.userIds, new Int32Array(message.stats)).catch(() => {})
  else if (message.type === 'cancel') runs.get(message.id)?.controller.abort(new DOMException(message.message, message.name))
  else if (message.type === 'written') runs.get(message.id)?.written()
  else if (message.type === 'close') aggregation.close().finally(() => port.close())
})
send({ type: 'ready' })

async function start (id: string, userIds: string[], stats: Int32Array) {
  const controller = new AbortController()
  let unwritten = 0
  let room: (() => void) | undefined
  const roomLeft = () => unwritten < MAX_UNWRITTEN_LINES || controller.signal.aborted
  runs.set(id, { controller, written: () => { unwritten--; room?.() } })
  const stages = runStages({ id, userIds }, {
    signal: controller.signal,
    onLine: async (line) => {
      send({ type: 'line', id, line })
      unwritten++
      // Paused, as stage 2 is by a slow result file in process, until the main thread has written enough.
      while (!roomLeft()) await new Promise<void>((resolve) => { room = resolve })
    }
  })
  // Read by the main thread for the batch's view and dashboard (io in flight, queue size, merges running).
  const sampler = setInterval(() => {
    const now = stages.stats()
    Atomics.store(stats, 0, now.io.inFlight)
    Atomics.store(stats, 1, now.queue.size)
    Atomics.store(stats, 2, now.cpu.busy)
    sendMerges()
  }, 100)
  controller.signal.addEventListener('abort', () => room?.(), { once: true })
  try {
    await stages.run()
    sendMerges()
    send({ type: 'end', id })
  } catch (error) {
    sendMerges()
    send({ type: 'end', id, error: controller.signal.aborted ? undefined : (error as Error).message })
  } finally {
    clearInterval(sampler)
    runs.delete(id)
  }
}
