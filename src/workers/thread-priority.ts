import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'

/**
 * Lowers the calling thread's priority, not the process's: on Linux a nice value belongs to a thread, named by its id,
 * which /proc/thread-self gives (Node has no API for it). Elsewhere the thread keeps the process's priority.
 */
export function lowerThisThreadsPriority (to: number) {
  if (to <= 0) return
  try {
    setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), to)
  } catch { /* not Linux */ }
}
