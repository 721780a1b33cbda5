import { registry } from '../src/lib/contract/upstreams.js'
import { prepareProductTexts } from './data.js'
import { createMockService } from './mock-service.js'
import { settingsFromEnvironment } from './settings.js'

// Starts one mock upstream: `node dist/mock-services/main.js <name>`, or MOCK_NAME. Port: MOCK_PORT, else the
// upstream's default (4001-4005). Latency and faults: MOCK_LATENCY_MS, MOCK_JITTER_MS, MOCK_TAIL_RATE and
// MOCK_TAIL_LATENCY_MS (that share of requests waits the tail latency instead), MOCK_FAILURE_RATE, MOCK_FAILURE_STATUS,
// MOCK_PAYLOAD_SCALE, MOCK_HOSTILE_BYTES, MOCK_MODE, MOCK_MODE_USER_PREFIX (the mode and failure rate then hit only the
// users whose id starts with it); the same settings can be changed at run time through PUT /__control.
const name = process.argv[2] ?? process.env.MOCK_NAME
const declaration = registry.upstreams.find((upstream) => upstream.name === name)
if (!declaration) {
  console.error(`usage: mock-services/main.js <${registry.upstreams.map((upstream) => upstream.name).join('|')}> (got ${JSON.stringify(name)})`)
  process.exit(2)
}

try {
  // A batch's first wave asks for 50 bodies at once: written from cold, they queued long enough to time calls out.
  if (declaration.name === 'recommendations') prepareProductTexts()
  const mock = createMockService(declaration.name, settingsFromEnvironment(process.env))
  const port = process.env.MOCK_PORT ? Number(process.env.MOCK_PORT) : declaration.defaults.port
  const url = await mock.listen(port, process.env.MOCK_HOST ?? '127.0.0.1')
  console.log(JSON.stringify({ level: 30, time: Date.now(), upstream: name, url, msg: `mock ${name} listening` }))
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => { mock.close().then(() => process.exit(0), () => process.exit(1)) })
  }
} catch (error) {
  console.error(`mock ${name} failed to start: ${(error as Error).message}`)
  process.exit(1)
}
