import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import { createAggregation } from './aggregation.js'
import { loadConfigOrExit } from './config.js'
import { createBatchItemWorker } from './lib/batch/batch-item-worker.js'

// A process that takes batch items from Redis and nothing else: the same upstream clients and merge pool as the
// gateway (src/aggregation.ts), no HTTP server. Run as many as the upstreams' limits allow: `npm run worker`, or the
// compose service batch-worker with --scale.

const config = loadConfigOrExit()
const { batch } = config
if (!batch.distributed) {
  console.error('BATCH_REDIS_URL is not set: a batch worker takes items from Redis, shared with the gateways (without it, each gateway runs its own batches)')
  process.exit(1)
}

const logger = pino({
  level: config.logLevel,
  // Pretty output for a person at a terminal; JSON lines for everything else.
  ...(process.stdout.isTTY ? { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l' } } } : {})
})
const aggregation = await createAggregation(config, logger, { interactive: false })
const worker = createBatchItemWorker({ ...batch, ...batch.distributed, aggregator: aggregation.aggregator, logger })

// SIGTERM/SIGINT: take no more items, finish those held (their lines are written), then close the clients and the pool;
// past SHUTDOWN_TIMEOUT_MS the process exits anyway, and the items it held are taken again by another process.
closeWithGrace({ delay: config.shutdownTimeoutMs, logger }, async ({ signal, err }) => {
  if (err) logger.error({ err }, 'shutting down after an uncaught error')
  else logger.info({ signal }, 'shutting down')
  await worker.close()
  await aggregation.close()
})

logger.info({ ioConcurrency: batch.ioConcurrency, globalIoConcurrency: batch.distributed.globalIoConcurrency, queueSize: batch.queueSize, cpuConcurrency: batch.cpuConcurrency }, 'batch worker taking items')
