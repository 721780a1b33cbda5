import { readFileSync, writeFileSync } from 'node:fs'
import { configSchema } from '../src/config.js'
import { registry, upstreamVariable } from '../src/lib/contract/upstreams.js'

// The configuration table of the README, generated from the schema the service validates against so the two cannot
// drift: `npx tsx scripts/config-table.ts` prints it, `--write` replaces it in README.md between the markers. A
// per-upstream variable whose default, range and meaning are the same for every upstream is one `UPSTREAM_<NAME>_…` row.
const START = '<!-- config-table:start -->'
const END = '<!-- config-table:end -->'

const schema = configSchema()
type Variable = ReturnType<typeof configSchema>[string]
const names = registry.upstreams.map((upstream) => upstream.name)

function cells (variable: Variable): [string, string, string] {
  const fallback = variable.default === undefined ? '(derived)' : `\`${String(variable.default)}\``
  const range = variable.enum
    ? variable.enum.map((value) => `\`${value}\``).join(', ')
    : variable.minimum !== undefined ? `${variable.minimum}..${variable.maximum ?? '∞'}` : variable.type
  return [fallback, range, variable.description]
}

/** The row's cells with the upstream's name replaced by `<name>`: equal for every upstream means one row will do. */
const generic = (name: string, variable: Variable) => cells(variable).map((cell) => cell.replaceAll(name, '<name>')).join('|')

const rows: string[] = []
const done = new Set<string>()
for (const [key, variable] of Object.entries(schema)) {
  if (done.has(key)) continue
  const owner = names.find((name) => key.startsWith(upstreamVariable(name, '')))
  if (owner) {
    const suffix = key.slice(upstreamVariable(owner, '').length)
    const same = names.map((name) => schema[upstreamVariable(name, suffix)])
    if (same.every((other, index) => other && generic(names[index]!, other) === generic(owner, variable))) {
      for (const name of names) done.add(upstreamVariable(name, suffix))
      const [fallback, range, meaning] = cells(variable).map((cell) => cell.replaceAll(owner, '`<name>`'))
      rows.push(`| \`UPSTREAM_<NAME>_${suffix}\` | ${fallback} | ${range} | ${meaning} |`)
      continue
    }
  }
  const [fallback, range, meaning] = cells(variable)
  rows.push(`| \`${key}\` | ${fallback} | ${range} | ${meaning} |`)
}
const table = ['| Variable | Default | Allowed | Meaning |', '|---|---|---|---|', ...rows].join('\n')

if (process.argv.includes('--write')) {
  const readme = new URL('../README.md', import.meta.url)
  const text = readFileSync(readme, 'utf8')
  const start = text.indexOf(START)
  const end = text.indexOf(END)
  if (start === -1 || end === -1) throw new Error(`README.md lacks the ${START} / ${END} markers`)
  writeFileSync(readme, `${text.slice(0, start + START.length)}\n${table}\n${text.slice(end)}`)
} else {
  console.log(table)
}
