/** Nearest-rank percentile of an ascending array (`fraction` in 0..1); `empty` when there are no values. */
export function percentile (sorted: ArrayLike<number>, fraction: number, empty = 0): number {
  if (sorted.length === 0) return empty
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))]!
}
