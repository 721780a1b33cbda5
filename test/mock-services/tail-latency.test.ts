import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createMockService, type MockService } from '../../mock-services/mock-service.js'
import { settingsFromEnvironment } from '../../mock-services/settings.js'

let mock: MockService
let url: string

beforeAll(async () => {
  mock = createMockService('recommendations')
  url = await mock.listen(0)
})
afterEach(async () => {
  await fetch(`${url}/__control`, { method: 'DELETE' })
  await fetch(`${url}/__stats`, { method: 'DELETE' })
})
afterAll(async () => { await mock?.close() })

const json = async (response: Response | Promise<Response>): Promise<any> => (await response).json()
const put = (body: unknown) => fetch(`${url}/__control`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
describe('a mock upstream with a long tail', () => {
  it('refuses a tailRate outside 0..1 and a tailLatencyMs that is not a whole number of ms from 0, and changes nothing', async () => {
    await put({ tailRate: 0.5, tailLatencyMs: 100 })
    const rateProblem = 'tailRate must be a number from 0 to 1'
    const latencyProblem = 'tailLatencyMs must be an integer from 0 to 600000'
    const cases: Array<[string, unknown, string]> = [
      ['tailRate', -0.1, rateProblem], ['tailRate', 1.01, rateProblem], ['tailRate', '0.2', rateProblem], ['tailRate', null, rateProblem],
      ['tailLatencyMs', -1, latencyProblem], ['tailLatencyMs', 2.5, latencyProblem], ['tailLatencyMs', '100', latencyProblem],
      ['tailLatencyMs', 600_001, latencyProblem], ['tailLatencyMs', true, latencyProblem]
    ]
    for (const [field, value, problem] of cases) {
      const rejected = await put({ [field]: value, latencyMs: 7 })
      const body = await json(rejected)
      expect(rejected.status, `${field}: ${JSON.stringify(value)} → ${JSON.stringify(body)}`).toBe(400)
      expect(body.problems).toEqual([problem])
    }
    expect(await json(fetch(`${url}/__control`))).toMatchObject({ tailRate: 0.5, tailLatencyMs: 100, latencyMs: 0 })
    expect(await json(put({ tailRate: 0, tailLatencyMs: 0 }))).toMatchObject({ tailRate: 0, tailLatencyMs: 0 })
    expect(await json(put({ tailRate: 1, tailLatencyMs: 600_000 }))).toMatchObject({ tailRate: 1, tailLatencyMs: 600_000 })
  })

  it('takes tailRate and tailLatencyMs from MOCK_TAIL_RATE and MOCK_TAIL_LATENCY_MS and refuses bad ones', () => {
    expect(settingsFromEnvironment({})).toMatchObject({ tailRate: 0, tailLatencyMs: 0 })
    expect(settingsFromEnvironment({ MOCK_TAIL_RATE: '0.05', MOCK_TAIL_LATENCY_MS: '800' })).toMatchObject({ tailRate: 0.05, tailLatencyMs: 800 })
    expect(() => settingsFromEnvironment({ MOCK_TAIL_RATE: '1.5' })).toThrow('tailRate must be a number from 0 to 1')
    expect(() => settingsFromEnvironment({ MOCK_TAIL_RATE: 'sometimes' })).toThrow('tailRate must be a number from 0 to 1')
    expect(() => settingsFromEnvironment({ MOCK_TAIL_LATENCY_MS: '12.5' })).toThrow('tailLatencyMs must be an integer from 0 to 600000')
    expect(() => settingsFromEnvironment({ MOCK_TAIL_LATENCY_MS: '-1' })).toThrow('tailLatencyMs must be an integer from 0 to 600000')
  })
})
