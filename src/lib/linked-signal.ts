export interface LinkedSignal {
  readonly signal: AbortSignal
  /** Stops the timer and detaches from the parents; call it when the work is done. */
  release (): void
}

/**
 * A signal that aborts when any parent aborts (with the parent's reason) or, given `timeoutMs`, when that time has
 * passed (with a `TimeoutError`). It replaces `AbortSignal.any([...parents, AbortSignal.timeout(ms)])`: on Node 20 a
 * timeout signal is reachable only through a WeakRef, so under GC pressure it can be collected and never fire (seen
 * here: hung calls cut by undici's 1 s safety net instead of at 200 ms). A plain timer holds the controller strongly,
 * and `release` clears it, so no timer outlives the work it guards.
 */
export function linkedSignal (parents: readonly AbortSignal[], timeoutMs?: number): LinkedSignal {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const onParentAbort = (event: Event) => { controller.abort((event.target as AbortSignal).reason) }
  const release = () => {
    clearTimeout(timer)
    for (const parent of parents) parent.removeEventListener('abort', onParentAbort)
  }
  controller.signal.addEventListener('abort', release, { once: true })

  for (const parent of parents) {
    if (parent.aborted) {
      controller.abort(parent.reason)
      return { signal: controller.signal, release }
    }
    parent.addEventListener('abort', onParentAbort, { once: true })
  }
  if (timeoutMs !== undefined) {
    timer = setTimeout(() => controller.abort(new DOMException(`timed out after ${timeoutMs} ms`, 'TimeoutError')), timeoutMs)
    timer.unref()
  }
  return { signal: controller.signal, release }
}
