import { LRUCache } from 'lru-cache'
import type { UpstreamName } from '../contract/upstreams.js'

/**
 * The last good body of each (upstream, user), kept so a failing optional upstream can be answered with its last
 * known value. Bounded three ways: entries, total bytes and age.
 */
export interface StaleCache {
  get (upstream: UpstreamName, userId: string): Uint8Array | undefined
  set (upstream: UpstreamName, userId: string, body: Uint8Array): void
  /** Whether the entry is missing, or has less than `share` of its time to live left: worth replacing. */
  needsRefresh (upstream: UpstreamName, userId: string, share: number): boolean
  readonly size: number
  readonly bytes: number
}

export function createStaleCache ({ maxEntries, maxBytes, ttlMs }: { maxEntries: number, maxBytes: number, ttlMs: number }): StaleCache {
  if (maxEntries === 0) {
    return { get: () => undefined, set: () => {}, needsRefresh: () => false, size: 0, bytes: 0 }
  }
  const cache = new LRUCache<string, Uint8Array>({
    max: maxEntries,
    maxSize: maxBytes,
    // A body larger than the whole budget is not kept rather than evicting everything else.
    maxEntrySize: maxBytes,
    sizeCalculation: (body) => Math.max(1, body.byteLength),
    ttl: ttlMs,
    ttlAutopurge: false
  })
  const key = (upstream: UpstreamName, userId: string) => `${upstream}\u0000${userId}`
  return {
    get: (upstream, userId) => cache.get(key(upstream, userId)),
    set: (upstream, userId, body) => { cache.set(key(upstream, userId), body) },
    needsRefresh: (upstream, userId, share) => cache.getRemainingTTL(key(upstream, userId)) < ttlMs * share,
    get size () { return cache.size },
    get bytes () { return cache.calculatedSize }
  }
}
