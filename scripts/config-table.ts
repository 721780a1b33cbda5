import { configSchema } from '../src/config.js'

// Prints the configuration table for the README from the schema the service validates against, so they cannot drift.
const rows = Object.entries(configSchema()).map(([name, variable]) => {
  const fallback = variable.default === undefined ? '(derived)' : `\`${String(variable.default)}\``
  const range = variable.enum
    ? variable.enum.map((value) => `\`${value}\``).join(', ')
    : variable.minimum !== undefined ? `${variable.minimum}..${variable.maximum ?? '∞'}` : variable.type
  return `| \`${name}\` | ${fallback} | ${range} | ${variable.description} |`
})
console.log(['| Variable | Default | Allowed | Meaning |', '|---|---|---|---|', ...rows].join('\n'))
