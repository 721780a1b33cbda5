import { describe, expect, it } from 'vitest'
import { BODY_GENERATORS, BODY_SERIALIZERS } from '../../mock-services/data.js'

describe('mock data', () => {
  it('serialises the bodies it has a faster way for to exactly the text JSON.stringify gives', () => {
    const names = Object.keys(BODY_SERIALIZERS)
    expect(names).toContain('recommendations')
    for (const name of names) {
      for (const scale of [0.05, 1, 3]) {
        for (const userId of ['u-1', 'batch-user-9999', 'ünïcode "quoted"', 'unknown-7']) {
          expect(BODY_SERIALIZERS[name]!(userId, scale)).toBe(JSON.stringify(BODY_GENERATORS[name]!(userId, scale)))
        }
      }
    }
  })
})
