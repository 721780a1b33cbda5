import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { configSchema } from '../src/config.js'
import { registry, upstreamVariable } from '../src/lib/contract/upstreams.js'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

describe('README', () => {
  it('documents every configuration variable the service reads', () => {
    // A `UPSTREAM_<NAME>_…` row stands for that variable of every declared upstream.
    const rows = [...readme.matchAll(/^\| `([A-Z0-9_<>]+)` \|/gm)].map((match) => match[1]!)
    const documented = new Set(rows.flatMap((row) => row.startsWith('UPSTREAM_<NAME>_')
      ? registry.upstreams.map(({ name }) => upstreamVariable(name, row.slice('UPSTREAM_<NAME>_'.length)))
      : [row]))
    expect([...documented].sort()).toEqual(Object.keys(configSchema()).sort())
  })

  it('starts with the two set-up commands', () => {
    const firstScreen = readme.split('\n').slice(0, 20).join('\n')
    expect(firstScreen).toContain('npm ci && npm start')
    expect(firstScreen).toContain('npm test')
  })
})
