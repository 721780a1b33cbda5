import { describe, expect, it } from 'vitest'
import { BODY_GENERATORS } from '../../../mock-services/data.js'
import { exceedsJsonBudget, MAX_JSON_DEPTH, type JsonBudget } from '../../../src/lib/merge/json-budget.js'
import { registry } from '../../../src/lib/contract/upstreams.js'

const encode = (text: string) => new TextEncoder().encode(text)
// The widest budget the gateway uses (recommendations').
const DEFAULT_JSON_BUDGET: JsonBudget = { maxDepth: MAX_JSON_DEPTH, maxElements: Math.max(...registry.upstreams.map((upstream) => upstream.defaults.maxBodyElements)) }

describe('exceedsJsonBudget', () => {
  for (const scale of [1, 10]) {
    for (const { name, defaults } of registry.upstreams) {
      it(`accepts the normal ${name} body at payload scale ${scale} within its registry budgets, bytes and values, with room to spare`, () => {
        const body = encode(JSON.stringify(BODY_GENERATORS[name]!('u-1', scale)))
        const { maxBodyBytes: defaultMaxBodyBytes, maxBodyElements: defaultMaxBodyElements } = defaults
        // At least 3× a scale-10 body (src/lib/contract/upstreams.ts): a third of each budget must be enough for it.
        expect(body.byteLength, `${name} bytes`).toBeLessThan(defaultMaxBodyBytes / 3)
        expect(exceedsJsonBudget(body, { maxDepth: MAX_JSON_DEPTH, maxElements: Math.floor(defaultMaxBodyElements / 3) }), name).toBeNull()
      })
    }
  }

  it('rejects a body nested deeper than maxDepth, at the first byte past the limit', () => {
    const deep = encode('['.repeat(100_000) + ']'.repeat(100_000))
    expect(exceedsJsonBudget(deep, DEFAULT_JSON_BUDGET)).toBe('nested deeper than 16 (at byte 16)')
    expect(exceedsJsonBudget(encode('{"a":{"b":[[1]]}}'), { maxDepth: 3, maxElements: 100 })).toBe('nested deeper than 3 (at byte 11)')
  })

  it('rejects a body with more elements than maxElements, whether arrays or scalars', () => {
    const wide = encode(`[${'[],'.repeat(1_000_000)}[]]`)
    expect(exceedsJsonBudget(wide, DEFAULT_JSON_BUDGET)).toMatch(/^more than 250000 elements \(at byte \d+\)$/)
    const flat = encode(`[${'0,'.repeat(1_000_000)}0]`)
    expect(exceedsJsonBudget(flat, DEFAULT_JSON_BUDGET)).toMatch(/^more than 250000 elements \(at byte \d+\)$/)
  })

  it('counts containers and commas, so a limit equal to the count passes and one less fails', () => {
    // 1 array + 2 commas + 1 object + 1 comma = 5; depth 2.
    const body = encode('[1,{"a":2,"b":3},4]')
    expect(exceedsJsonBudget(body, { maxDepth: 2, maxElements: 5 })).toBeNull()
    expect(exceedsJsonBudget(body, { maxDepth: 1, maxElements: 5 })).toBe('nested deeper than 1 (at byte 3)')
    expect(exceedsJsonBudget(body, { maxDepth: 2, maxElements: 4 })).toBe('more than 4 elements (at byte 16)')
    expect(exceedsJsonBudget(encode('[]'), { maxDepth: 1, maxElements: 1 })).toBeNull()
    expect(exceedsJsonBudget(encode('42'), { maxDepth: 0, maxElements: 0 })).toBeNull()
  })

  it('does not count brackets, commas or escaped quotes and backslashes inside strings', () => {
    const tricky = JSON.stringify({ text: '[[[{{{,,,"]]]\\', more: '\\"[,' + '\\'.repeat(3), last: '"' })
    expect(JSON.parse(tricky).more).toBe('\\"[,\\\\\\')
    // 1 object + 2 commas, depth 1, whatever the strings hold.
    expect(exceedsJsonBudget(encode(tricky), { maxDepth: 1, maxElements: 3 })).toBeNull()
    expect(exceedsJsonBudget(encode(`["${'[,'.repeat(100_000)}"]`), { maxDepth: 1, maxElements: 1 })).toBeNull()
    // A string that ends in an escaped backslash is closed by the next quote.
    expect(exceedsJsonBudget(encode('["a\\\\",[[1]]]'), { maxDepth: 2, maxElements: 10 })).toBe('nested deeper than 2 (at byte 8)')
  })

  it('leaves broken JSON within the budget to JSON.parse rather than calling it over budget', () => {
    expect(exceedsJsonBudget(encode('["never closed'), DEFAULT_JSON_BUDGET)).toBeNull()
    expect(exceedsJsonBudget(encode(']]]'), DEFAULT_JSON_BUDGET)).toBeNull()
  })

  it('accepts unlimited budgets', () => {
    const flat = encode(`[${'0,'.repeat(10_000)}0]`)
    expect(exceedsJsonBudget(flat, { maxDepth: Number.POSITIVE_INFINITY, maxElements: Number.POSITIVE_INFINITY })).toBeNull()
  })
})
