import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { configSchema } from '../src/config.js'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

describe('README', () => {
  it('documents every configuration variable the service reads', () => {
    const documented = new Set([...readme.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((match) => match[1]))
    expect([...documented].sort()).toEqual(Object.keys(configSchema()).sort())
  })

  it('starts with the two set-up commands', () => {
    const firstScreen = readme.split('\n').slice(0, 20).join('\n')
    expect(firstScreen).toContain('npm ci && npm start')
    expect(firstScreen).toContain('npm test')
  })
})
