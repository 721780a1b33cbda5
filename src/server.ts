import closeWithGrace from 'close-with-grace'
import Fastify from 'fastify'
import app from './app.js'
import { loadConfigOrExit } from './config.js'
import { serverOptions } from './server-options.js'

const config = loadConfigOrExit()

const fastify = Fastify(serverOptions(config))
await fastify.register(app, { config })

// SIGTERM/SIGINT: stop accepting, let in-flight requests finish, then close the pools (onClose hooks);
// past SHUTDOWN_TIMEOUT_MS the process exits anyway.
closeWithGrace({ delay: config.shutdownTimeoutMs, logger: fastify.log }, async ({ signal, err }) => {
  if (err) fastify.log.error({ err }, 'shutting down after an uncaught error')
  else fastify.log.info({ signal }, 'shutting down')
  await fastify.close()
})

await fastify.listen({ host: config.host, port: config.port })
