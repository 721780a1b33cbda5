/**
 * Counters that several threads increment at once, without losing updates: 64-bit slots in a SharedArrayBuffer, changed
 * only with `Atomics.add`. A plain `slot++` on shared memory is a read, an add and a write; two threads interleaving
 * them both write the same value and one increment is lost (test/workers/shared-counters.test.ts shows it happening).
 */
export interface SharedCounters<Name extends string> {
  /** Pass this to other threads (e.g. as piscina `workerData`); it is shared, not copied. */
  readonly buffer: SharedArrayBuffer
  add (name: Name, amount?: number): void
  read (name: Name): number
  readAll (): Record<Name, number>
}

/**
 * Creates counters named `names`, or attaches to the `buffer` another thread created with the same names.
 */
export function sharedCounters<Name extends string> (names: readonly Name[], buffer = new SharedArrayBuffer(names.length * 8)): SharedCounters<Name> {
  if (buffer.byteLength !== names.length * 8) throw new RangeError(`expected a buffer of ${names.length * 8} bytes, got ${buffer.byteLength}`)
  const slots = new BigInt64Array(buffer)
  const index = new Map(names.map((name, position) => [name, position]))
  const slotOf = (name: Name) => {
    const position = index.get(name)
    if (position === undefined) throw new RangeError(`unknown counter ${JSON.stringify(name)}`)
    return position
  }
  return {
    buffer,
    add: (name, amount = 1) => { Atomics.add(slots, slotOf(name), BigInt(amount)) },
    read: (name) => Number(Atomics.load(slots, slotOf(name))),
    readAll: () => Object.fromEntries(names.map((name) => [name, Number(Atomics.load(slots, slotOf(name)))])) as Record<Name, number>
  }
}
