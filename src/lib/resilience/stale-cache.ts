import { LRUCache } from 'lru-cache'

/**
 * The last good body of each (source, key) — for the gateway, (upstream, user) — kept so a failing source can be
 * answered with its last known value. Bounded three ways: entries, total bytes and age.
 */
export interface StaleCache {
  get (source: string, key: string): Uint8Array | undefined
  set (source: string, key: string, body: Uint8Array): void
  /** Whether the entry is missing, or has less than `share` of its time to live left: worth replacing. */
  needsRefresh (source: string, key: string, share: number): boolean
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
  const entry = (source: string, key: string) => `${source}\u0000${key}`
  return {
    get: (source, key) => cache.get(entry(source, key)),
    set: (source, key, body) => { cache.set(entry(source, key), body) },
    needsRefresh: (source, key, share) => cache.getRemainingTTL(entry(source, key)) < ttlMs * share,
    get size () { return cache.size },
    get bytes () { return cache.calculatedSize }
  }
}
