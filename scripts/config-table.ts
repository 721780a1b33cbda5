import { readFileSync, writeFileSync } from 'node:fs'
import { configSchema } from '../src/config.js'

// The configuration table of the README, generated from the schema the service validates against so the two cannot
// drift: `npx tsx scripts/config-table.ts` prints it, `--write` replaces it in README.md between the markers.
const START = '<!-- config-table:start -->'
const END = '<!-- config-table:end -->'

const rows = Object.entries(configSchema()).map(([name, variable]) => {
  const fallback = variable.default === undefined ? '(derived)' : `\`${String(variable.default)}\``
  const range = variable.enum
    ? variable.enum.map((value) => `\`${value}\``).join(', ')
    : variable.minimum !== undefined ? `${variable.minimum}..${variable.maximum ?? '∞'}` : variable.type
  return `| \`${name}\` | ${fallback} | ${range} | ${variable.description} |`
})
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
