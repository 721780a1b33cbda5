import { readFileSync } from 'node:fs'
import type { FastifyPluginAsync } from 'fastify'
import type { Telemetry } from '../lib/telemetry/telemetry.js'
import { neverShed } from '../lib/overload/never-shed.js'

export interface ObservabilityRoutesOptions {
  telemetry: Telemetry
  metrics: boolean
  dashboard: boolean
  maxDashboardClients: number
  /** A stream is closed after this long; the page's EventSource reconnects. */
  streamMaxSeconds: number
  retryAfterSeconds: number
}

// The dashboard is a few static files with no build step; read once at start.
const DASHBOARD_FILES = new URL('../../public/dashboard/', import.meta.url)
const ASSETS = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml'
} as const

// Nothing inline, nothing from elsewhere: the page can only run its own script and talk to its own origin.
// A client that stops reading is dropped once this much is waiting for it, instead of holding a slot and memory.
const MAX_UNREAD_STREAM_BYTES = 256 * 1024

const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'"

/**
 * `/metrics` (Prometheus text format), `/dashboard` (a live page) and `/dashboard/stream` (server-sent events: one
 * snapshot a second, shared by every connected page). They skip load shedding: an operator needs them most under load.
 */
const observabilityRoutes: FastifyPluginAsync<ObservabilityRoutesOptions> = async (fastify, options) => {
  const { telemetry } = options

  if (options.metrics) {
    fastify.get('/metrics', { config: neverShed }, async (_request, reply) => {
      reply.type(telemetry.registry.contentType)
      return telemetry.registry.metrics()
    })
  }

  if (!options.dashboard) return

  const files = Object.fromEntries(Object.keys(ASSETS).map((name) => [name, readFileSync(new URL(name, DASHBOARD_FILES))]))
  for (const [name, type] of Object.entries(ASSETS) as Array<[keyof typeof ASSETS, string]>) {
    fastify.get(name === 'index.html' ? '/dashboard' : `/dashboard/${name}`, { config: neverShed }, async (_request, reply) => {
      reply.type(type).header('content-security-policy', CONTENT_SECURITY_POLICY).header('x-content-type-options', 'nosniff').header('cache-control', 'no-cache')
      return files[name]
    })
  }

  fastify.get('/dashboard/snapshot', { config: neverShed }, async () => telemetry.snapshot())

  const streams = new Set<() => void>()
  fastify.get('/dashboard/stream', { config: neverShed }, async (request, reply) => {
    if (streams.size >= options.maxDashboardClients) {
      return reply.code(503).header('retry-after', options.retryAfterSeconds).send({ statusCode: 503, error: 'Service Unavailable', message: 'too many dashboards connected' })
    }
    reply.hijack()
    const raw = reply.raw
    raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' })
    const send = (snapshot: unknown) => {
      if (raw.writableLength > MAX_UNREAD_STREAM_BYTES) end()
      else raw.write(`data: ${JSON.stringify(snapshot)}\n\n`)
    }
    const unsubscribe = telemetry.subscribe(send)
    const lifetime = setTimeout(() => end(), options.streamMaxSeconds * 1000)
    lifetime.unref()
    const end = () => {
      unsubscribe()
      clearTimeout(lifetime)
      streams.delete(end)
      if (!raw.writableEnded) raw.end()
    }
    streams.add(end)
    send(telemetry.snapshot())
    request.raw.on('close', end)
  })

  // Streams never end by themselves; on shutdown they must, or the server would wait for them forever.
  fastify.addHook('preClose', async () => { for (const end of [...streams]) end() })
}

export default observabilityRoutes
