import fp from 'fastify-plugin'
import { createUpstreamClient, type UpstreamClient } from '../clients/upstream-client.js'
import { UPSTREAM_NAMES, type UpstreamName } from '../lib/contract/upstreams.js'
import type { UpstreamState } from './telemetry.js'

declare module 'fastify' {
  interface FastifyInstance {
    upstreamClients: Readonly<Record<UpstreamName, UpstreamClient>>
  }
}

/** One client (connection pool and bulkhead) per upstream, closed after the last in-flight request. */
export default fp(async function upstreamClients (fastify) {
  const { upstreams, upstreamTransport } = fastify.config
  const clients = Object.fromEntries(
    UPSTREAM_NAMES.map((name) => [name, createUpstreamClient(upstreams[name], upstreamTransport)])
  ) as Record<UpstreamName, UpstreamClient>
  fastify.decorate('upstreamClients', Object.freeze(clients))
  fastify.telemetry.setUpstreamStateSource(() => Object.fromEntries(UPSTREAM_NAMES.map((name) => {
    const { bulkhead } = clients[name]
    return [name, {
      inFlight: bulkhead.active,
      queued: bulkhead.queued,
      concurrency: bulkhead.concurrency,
      maxQueue: bulkhead.maxQueue,
      connections: clients[name].connectionStats()
    }]
  })) as Record<UpstreamName, UpstreamState>)
  fastify.addHook('onClose', async () => {
    await Promise.all(Object.values(clients).map((client) => client.close()))
  })
}, { name: 'upstream-clients', dependencies: ['config', 'telemetry'] })
