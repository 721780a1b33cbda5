import { spawnSync } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../src/config.js'
import { compiled } from './helpers/compiled.js'

function problemsOf (env: Record<string, string>): string {
  try {
    loadConfig(env)
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return (error as Error).message
  }
  throw new Error('expected the configuration to be rejected')
}

describe('configuration', () => {
  it('has working defaults', () => {
    const config = loadConfig({})
    expect(config.port).toBe(3000)
    expect(config.aggregate.deadlineMs).toBe(300)
    expect(config.upstreams.orders!).toMatchObject({ url: 'http://127.0.0.1:4002', timeoutMs: 200, fallback: 'stale-or-default' })
    expect(config.upstreams.profile!.fallback).toBe('omit')
    expect(config.mergePool.maxQueue).toBe(config.admission.maxLimit)
    expect(config.observability.port, 'metrics and the dashboard stay off the aggregate port').toBe(9464)
    expect(Object.isFrozen(config)).toBe(true)
  })

  it('reads typed values from the environment', () => {
    const config = loadConfig({
      PORT: '8080', UPSTREAM_ORDERS_TIMEOUT_MS: '150', UPSTREAM_LOYALTY_FALLBACK: 'omit', LOAD_SHEDDING_ENABLED: 'false', LOAD_SHEDDING_MAX_EVENT_LOOP_UTILIZATION: '0.9'
    })
    expect(config.port).toBe(8080)
    expect(config.upstreams.orders!.timeoutMs).toBe(150)
    expect(config.upstreams.loyalty!.fallback).toBe('omit')
    expect(config.loadShedding).toMatchObject({ enabled: false, maxEventLoopUtilization: 0.9 })
  })

  it.each([
    [{ PORT: 'abc' }, 'PORT must be integer; got "abc"'],
    [{ UPSTREAM_ORDERS_TIMEOUT_MS: '-5' }, 'UPSTREAM_ORDERS_TIMEOUT_MS must be >= 1; got "-5"'],
    [{ UPSTREAM_ORDERS_URL: 'not a url' }, 'UPSTREAM_ORDERS_URL must match pattern'],
    [{ UPSTREAM_LOYALTY_FALLBACK: 'sometimes' }, 'UPSTREAM_LOYALTY_FALLBACK must be equal to one of the allowed values (one of: stale-or-default, stale-or-omit, default, omit)'],
    [{ UPSTREAM_ORDER_TIMEOUT_MS: '100' }, 'UPSTREAM_ORDER_TIMEOUT_MS is not a setting this service knows'],
    [{ UPSTREAM_ORDERS_TIMEOUT_MS: '500' }, 'UPSTREAM_ORDERS_TIMEOUT_MS (500) must not exceed AGGREGATE_DEADLINE_MS (300)'],
    [{ AGGREGATE_MERGE_RESERVE_MS: '300' }, 'AGGREGATE_MERGE_RESERVE_MS (300) must be less than AGGREGATE_DEADLINE_MS (300)'],
    [{ LOAD_SHEDDING_MAX_EVENT_LOOP_UTILIZATION: '1.5' }, 'LOAD_SHEDDING_MAX_EVENT_LOOP_UTILIZATION must be <= 1'],
    [{ BATCH_REDIS_URL: 'localhost:6379' }, 'BATCH_REDIS_URL must match pattern'],
    [{ BATCH_GLOBAL_IO_CONCURRENCY: '20' }, 'BATCH_GLOBAL_IO_CONCURRENCY applies only with BATCH_REDIS_URL, which is not set'],
    [{ BATCH_REDIS_URL: 'redis://redis:6379', BATCH_THREAD_NICENESS: '3' }, 'BATCH_THREAD_NICENESS applies only without BATCH_REDIS_URL'],
    [{ BATCH_ON_THREAD: 'false', BATCH_THREAD_NICENESS: '3' }, 'BATCH_THREAD_NICENESS applies only with BATCH_ON_THREAD=true']
  ])('rejects %o naming the variable', (env, message) => {
    expect(problemsOf(env)).toContain(message)
  })

  it('runs batches in process unless BATCH_REDIS_URL is set; across processes, the global limit defaults to the per-process one', () => {
    expect(loadConfig({}).batch.distributed).toBeUndefined()
    expect(loadConfig({ BATCH_REDIS_URL: 'redis://redis:6379', BATCH_IO_CONCURRENCY: '25' }).batch.distributed).toEqual({
      redisUrl: 'redis://redis:6379', globalIoConcurrency: 25, itemsPerJob: 10, gatewayTakesItems: true, lockDurationMs: 30_000, stalledIntervalMs: 30_000
    })
  })

  it('gives batches merge threads of their own, one per core at niceness 10, whatever the interactive pool has', () => {
    expect(loadConfig({ MERGE_POOL_THREADS: '3' }).batch).toMatchObject({ cpuConcurrency: availableParallelism(), cpuNiceness: 10 })
    expect(loadConfig({ BATCH_CPU_CONCURRENCY: '3', BATCH_CPU_NICENESS: '0' }).batch).toMatchObject({ cpuConcurrency: 3, cpuNiceness: 0 })
    expect(() => loadConfig({ BATCH_CPU_NICENESS: '20' })).toThrow(/BATCH_CPU_NICENESS/)
  })

  it('runs batches on a thread of their own by default, at niceness 5: below the event loop, above the batch merges', () => {
    expect(loadConfig({}).batch).toMatchObject({ onThread: true, threadNiceness: 5 })
    expect(loadConfig({ BATCH_THREAD_NICENESS: '0' }).batch).toMatchObject({ onThread: true, threadNiceness: 0 })
    expect(loadConfig({ BATCH_ON_THREAD: 'false' }).batch).toMatchObject({ onThread: false })
  })

  it('reads only the environment it is given, where an empty variable counts as unset (compose turns an unset one into an empty string)', () => {
    const before = process.env.BATCH_REDIS_URL
    process.env.BATCH_REDIS_URL = 'not a url'
    try {
      expect(loadConfig({ BATCH_REDIS_URL: '', PORT: '' })).toMatchObject({ port: 3000, batch: { distributed: undefined } })
    } finally {
      if (before === undefined) delete process.env.BATCH_REDIS_URL
      else process.env.BATCH_REDIS_URL = before
    }
  })

  it('reports every bad variable at once', () => {
    const message = problemsOf({ PORT: 'x', UPSTREAM_INVENTORY_CONCURRENCY: '0' })
    expect(message).toContain('PORT')
    expect(message).toContain('UPSTREAM_INVENTORY_CONCURRENCY must be >= 1')
  })

  it('stops the process at boot with a message naming the variable', () => {
    const result = spawnSync(process.execPath, [fileURLToPath(compiled(new URL('../src/server.ts', import.meta.url)))], {
      env: { ...process.env, UPSTREAM_RECOMMENDATIONS_CONCURRENCY: 'lots', PORT: '0' },
      encoding: 'utf8',
      timeout: 20_000
    })
    expect(result.status, `exit status; stderr: ${result.stderr.slice(-1000)}`).toBe(1)
    expect(result.stderr).toContain('Invalid configuration')
    expect(result.stderr).toContain('UPSTREAM_RECOMMENDATIONS_CONCURRENCY must be integer; got "lots"')
    expect(result.stderr).not.toMatch(/\n\s+at /)
  })
})
