/** The median and the spread (min and max) of a set of per-round measurements. */
export interface Spread {
  median: number | null
  min: number | null
  max: number | null
  rounds: number[]
}

export function spread (values: Array<number | null | undefined>): Spread {
  const rounds = values.filter((value): value is number => typeof value === 'number' && Number.isFinite(value))
  if (rounds.length === 0) return { median: null, min: null, max: null, rounds }
  const sorted = [...rounds].sort((left, right) => left - right)
  const middle = Math.floor(sorted.length / 2)
  const median = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
  return { median, min: sorted[0]!, max: sorted.at(-1)!, rounds }
}

/** "120.5 (118.2–125.0)": the median and the range over rounds. */
export function formatSpread (value: Spread, digits = 1, unit = ''): string {
  if (value.median === null) return '–'
  const format = (number: number) => number.toFixed(digits)
  if (value.rounds.length === 1 || value.min === value.max) return `${format(value.median)}${unit}`
  return `${format(value.median)}${unit} (${format(value.min!)}–${format(value.max!)})`
}

export const ratio = (numerator: number | null, denominator: number | null, digits = 2): number | null =>
  numerator === null || denominator === null || denominator === 0 ? null : Number((numerator / denominator).toFixed(digits))
