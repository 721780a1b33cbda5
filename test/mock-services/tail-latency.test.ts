import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createMockService, type MockService, type MockStats } from '../../mock-services/mock-service.js'
import { settingsFromEnvironment } from '../../mock-services/settings.js'
import { eventually } from '../helpers/mock-upstreams.js'

// A Node timer may fire up to a millisecond before its delay measured with performance.now (it counts whole ms).
const TIMER_SLACK_MS = 2

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
const stats = async (): Promise<MockStats> => json(fetch(`${url}/__stats`))
const resource = (user: string, init?: RequestInit) => fetch(`${url}/users/${user}/recommendations`, init)

/** Sends `count` requests at once and waits for every body. */
async function burst (count: number, first = 0): Promise<number[]> {
  return Promise.all(Array.from({ length: count }, async (_, index) => {
    const response = await resource(`u-${first + index}`, { signal: AbortSignal.timeout(5000) })
    await response.arrayBuffer()
    return response.status
  }))
}

describe('a mock upstream with a long tail', () => {
  it('makes every request wait at least tailLatencyMs when tailRate is 1, and counts each as tail', async () => {
    const settings = await json(put({ tailRate: 1, tailLatencyMs: 150 }))
    expect(settings).toMatchObject({ latencyMs: 0, jitterMs: 0, tailRate: 1, tailLatencyMs: 150 })
    const answers = await Promise.all(Array.from({ length: 5 }, async (_, index) => {
      const startedAt = performance.now()
      const response = await resource(`u-${index}`)
      await response.arrayBuffer()
      return { status: response.status, elapsedMs: performance.now() - startedAt }
    }))
    for (const answer of answers) {
      expect(answer.status).toBe(200)
      expect(answer.elapsedMs, `a request answered after ${answer.elapsedMs.toFixed(1)} ms`).toBeGreaterThanOrEqual(150 - TIMER_SLACK_MS)
    }
    expect(await stats()).toMatchObject({ requests: 5, completed: 5, tail: 5 })
  })

  it('puts no request in the tail when tailRate is 0, however long the tail would be', async () => {
    await put({ tailRate: 0, tailLatencyMs: 60_000 })
    // A request in the tail would wait a minute: the 5 s timeout in burst() would fail it.
    expect(await burst(20)).toEqual(Array(20).fill(200))
    expect(await stats()).toMatchObject({ requests: 20, completed: 20, tail: 0 })
  })

  it('puts about tailRate of the requests in the tail, and the same ones again after the settings are set again', async () => {
    // Four bursts of 50: each burst is a fixed stretch of the draw sequence, whatever order its requests arrive in.
    async function tailCountsAfterEachBurst (): Promise<number[]> {
      await put({ tailRate: 0.2, tailLatencyMs: 1 })
      await fetch(`${url}/__stats`, { method: 'DELETE' })
      const counts: number[] = []
      for (let burstIndex = 0; burstIndex < 4; burstIndex++) {
        expect(await burst(50, burstIndex * 50)).toEqual(Array(50).fill(200))
        counts.push((await stats()).tail)
      }
      return counts
    }
    const first = await tailCountsAfterEachBurst()
    // 200 draws at 0.2: mean 40, standard deviation 5.7; 20..60 is beyond 3.5 of them on either side.
    expect(first[3], `tail counts after each burst of 50: ${first.join(', ')}`).toBeGreaterThanOrEqual(20)
    expect(first[3], `tail counts after each burst of 50: ${first.join(', ')}`).toBeLessThanOrEqual(60)
    expect(await tailCountsAfterEachBurst()).toEqual(first)
  })

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

  it('counts a request whose client leaves during its tail wait as aborted, and never answers it', async () => {
    await put({ tailRate: 1, tailLatencyMs: 30_000 })
    const controller = new AbortController()
    const outcome = resource('u-1', { signal: controller.signal }).then(() => 'answered', () => 'aborted')
    await eventually(async () => (await stats()).inFlight === 1, 3000, 'the request to reach the mock')
    controller.abort()
    expect(await outcome).toBe('aborted')
    await eventually(async () => (await stats()).inFlight === 0, 3000, 'the mock to see the client leave')
    expect(await stats()).toMatchObject({ requests: 1, tail: 1, aborted: 1, completed: 0, inFlight: 0 })
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
