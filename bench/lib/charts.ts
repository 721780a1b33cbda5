import type { Spread } from './stats.js'

// Small, dependency-free SVG bar charts for the benchmark results: groups of bars (one per series), each bar the
// median over rounds with a whisker from the lowest to the highest round, optional dashed reference lines.

export interface BarChart {
  title: string
  unit: string
  groups: string[]
  series: Array<{ name: string, values: Spread[] }>
  references?: Array<{ label: string, value: number }>
  logScale?: boolean
}

const COLOURS = ['#3949ab', '#ef6c00', '#2e7d32', '#8e24aa', '#00838f']
const WIDTH = 720
const HEIGHT = 360
const MARGIN = { top: 48, right: 24, bottom: 64, left: 72 }

const escapeXml = (text: string) => text.replace(/[<>&"']/g, (character) => `&#${character.charCodeAt(0)};`)

function niceMax (value: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(value))
  return [1, 2, 2.5, 5, 10].map((step) => step * magnitude).find((candidate) => candidate >= value) ?? value
}

function formatTick (value: number): string {
  if (value >= 1000) return `${Number((value / 1000).toPrecision(3))}k`
  return String(Number(value.toPrecision(3)))
}

export function barChartSvg (chart: BarChart): string {
  const values = chart.series.flatMap((series) => series.values.flatMap((value) => [value.max, value.median])).filter((value): value is number => value !== null && value > 0)
  const referenceValues = (chart.references ?? []).map((reference) => reference.value)
  const top = niceMax(Math.max(1e-9, ...values, ...referenceValues) * 1.05)
  const bottom = chart.logScale ? 10 ** Math.floor(Math.log10(Math.max(1e-9, Math.min(...values, ...referenceValues)))) : 0
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom
  const y = (value: number) => {
    const share = chart.logScale
      ? (Math.log10(Math.max(value, bottom)) - Math.log10(bottom)) / (Math.log10(top) - Math.log10(bottom))
      : value / top
    return MARGIN.top + plotHeight * (1 - share)
  }

  const ticks = chart.logScale
    ? Array.from({ length: Math.round(Math.log10(top / bottom)) + 1 }, (_, index) => bottom * 10 ** index)
    : Array.from({ length: 6 }, (_, index) => (top / 5) * index)
  const parts: string[] = []
  parts.push(`<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="16" font-weight="600">${escapeXml(chart.title)}</text>`)
  for (const tick of ticks) {
    parts.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y(tick)}" y2="${y(tick)}" stroke="#e0e0e0"/>`)
    parts.push(`<text x="${MARGIN.left - 8}" y="${y(tick) + 4}" text-anchor="end" font-size="11" fill="#616161">${formatTick(tick)}</text>`)
  }
  parts.push(`<text transform="translate(18 ${MARGIN.top + plotHeight / 2}) rotate(-90)" text-anchor="middle" font-size="12" fill="#424242">${escapeXml(chart.unit)}${chart.logScale ? ' (log scale)' : ''}</text>`)

  const groupWidth = plotWidth / chart.groups.length
  const barWidth = Math.min(56, (groupWidth * 0.75) / chart.series.length)
  chart.groups.forEach((group, groupIndex) => {
    const groupStart = MARGIN.left + groupIndex * groupWidth + (groupWidth - barWidth * chart.series.length) / 2
    chart.series.forEach((series, seriesIndex) => {
      const value = series.values[groupIndex]
      if (!value || value.median === null) return
      const x = groupStart + seriesIndex * barWidth
      const colour = COLOURS[seriesIndex % COLOURS.length]
      const barTop = y(value.median)
      parts.push(`<rect x="${x + 2}" y="${barTop}" width="${barWidth - 4}" height="${Math.max(0, MARGIN.top + plotHeight - barTop)}" fill="${colour}"><title>${escapeXml(`${series.name}, ${group}: ${value.median}`)}</title></rect>`)
      if (value.min !== null && value.max !== null && value.max > value.min) {
        const centre = x + barWidth / 2
        parts.push(`<path d="M${centre} ${y(value.min)}V${y(value.max)}M${centre - 5} ${y(value.min)}h10M${centre - 5} ${y(value.max)}h10" stroke="#212121" stroke-width="1.2"/>`)
      }
      parts.push(`<text x="${x + barWidth / 2}" y="${barTop - 6}" text-anchor="middle" font-size="10" fill="#212121">${formatTick(value.median)}</text>`)
    })
    parts.push(`<text x="${MARGIN.left + groupIndex * groupWidth + groupWidth / 2}" y="${HEIGHT - MARGIN.bottom + 18}" text-anchor="middle" font-size="12">${escapeXml(group)}</text>`)
  })

  for (const reference of chart.references ?? []) {
    parts.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y(reference.value)}" y2="${y(reference.value)}" stroke="#c62828" stroke-dasharray="6 4"/>`)
    parts.push(`<text x="${WIDTH - MARGIN.right}" y="${y(reference.value) - 4}" text-anchor="end" font-size="11" fill="#c62828">${escapeXml(reference.label)}</text>`)
  }

  let legendX = MARGIN.left
  chart.series.forEach((series, index) => {
    parts.push(`<rect x="${legendX}" y="${HEIGHT - 26}" width="12" height="12" fill="${COLOURS[index % COLOURS.length]}"/>`)
    parts.push(`<text x="${legendX + 18}" y="${HEIGHT - 16}" font-size="12">${escapeXml(series.name)}</text>`)
    legendX += 30 + series.name.length * 7
  })
  parts.push(`<text x="${WIDTH - MARGIN.right}" y="${HEIGHT - 16}" text-anchor="end" font-size="10" fill="#757575">bars: median of rounds; whiskers: min–max</text>`)

  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${HEIGHT}" width="${WIDTH}" height="${HEIGHT}" font-family="system-ui, sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`
}
