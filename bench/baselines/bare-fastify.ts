import Fastify from 'fastify'
import { inventoryFor, loyaltyFor, ordersFor, profileFor, recommendationsFor } from '../../mock-services/data.js'
import { mergeSections } from '../lib/merge.js'
import { registry, UPSTREAM_NAMES } from '../../src/lib/contract/upstreams.js'
import { aggregateBodySchema } from '../../src/lib/contract/response.js'

// The ceiling for gateway overhead: a bare Fastify route that answers the same body through the same response schema,
// with no upstream calls and no merge (the body is computed once, at start).
const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))
const userId = 'bench-user-0'
const bodies = { profile: profileFor(userId), orders: ordersFor(userId, 1), recommendations: recommendationsFor(userId, 1), inventory: inventoryFor(userId, 1), loyalty: loyaltyFor(userId, 1) }
const sections = mergeSections(userId, Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, encode(bodies[name])])))
const upstreams = Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, { status: 'ok', latencyMs: 0, attempts: 1, fallback: 'none' }]))
const body = { userId, ...sections, meta: { complete: true, durationMs: 0, upstreams } }

const fastify = Fastify({ logger: false, keepAliveTimeout: 72_000 })
fastify.get('/health', async () => ({ status: 'ok' }))
fastify.get('/aggregate/:userId', { schema: { response: { 200: aggregateBodySchema(registry) } } }, async (_request, reply) => {
  reply.header('x-aggregate-complete', 'true')
  return body
})
await fastify.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 3101) })
process.once('SIGTERM', () => { fastify.close().then(() => process.exit(0), () => process.exit(1)) })
