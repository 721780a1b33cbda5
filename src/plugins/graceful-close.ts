import fp from 'fastify-plugin'

/**
 * During shutdown, responses to requests that were already in flight carry `Connection: close`. Fastify closes idle
 * keep-alive connections when `close()` starts, but a connection whose request finishes later would stay open until
 * its keep-alive timeout and hold the shutdown hostage.
 */
export default fp(async function gracefulClose (fastify) {
  let closing = false
  fastify.addHook('preClose', async () => { closing = true })
  fastify.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close')
  })
}, { name: 'graceful-close' })
