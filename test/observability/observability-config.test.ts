import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildGateway, type TestGateway } from '../helpers/build-gateway.js'
import { startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'

const hasPromtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0
const dashboard = JSON.parse(readFileSync(new URL('../../observability/grafana/dashboards/aggregator.json', import.meta.url), 'utf8'))

// PromQL words that are not metric names.
const PROMQL_WORDS = new Set([
  'sum', 'max', 'min', 'avg', 'count', 'rate', 'irate', 'increase', 'histogram_quantile', 'by', 'without', 'on', 'ignoring',
  'group_left', 'group_right', 'and', 'or', 'unless', 'offset', 'bool', 'topk', 'bottomk', 'abs', 'clamp_min', 'clamp_max'
])

/** The metric names a PromQL expression reads: identifiers outside label matchers, grouping clauses and ranges. */
function metricNames (expression: string): string[] {
  const stripped = expression
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
  return [...stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map(([word]) => word).filter((word) => !PROMQL_WORDS.has(word))
}

/** Every series name the service exports: from `# TYPE` lines, with a histogram's _bucket, _sum and _count. */
function exportedNames (metrics: string): Set<string> {
  const names = new Set<string>()
  for (const [, name, type] of metrics.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!)
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`)
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(`${name}${suffix}`)
  }
  return names
}

describe('the Grafana dashboard in observability/', () => {
  let upstreams: MockUpstreams
  let gateway: TestGateway

  beforeAll(async () => {
    upstreams = await startMockUpstreams()
    gateway = await buildGateway(upstreams.env)
  })
  afterAll(async () => {
    await gateway?.close()
    await upstreams?.close()
  })

  it('only queries metrics the service really exports', async () => {
    const exported = exportedNames((await gateway.inject({ url: '/metrics' })).body)
    const panels = dashboard.panels as Array<{ title: string, targets: Array<{ expr: string }> }>
    expect(panels.length).toBeGreaterThanOrEqual(10)
    for (const panel of panels) {
      const used = panel.targets.flatMap((target) => metricNames(target.expr))
      expect(used.length, `panel "${panel.title}" queries no metric`).toBeGreaterThan(0)
      for (const name of used) expect(exported, `panel "${panel.title}" queries ${name}`).toContain(name)
    }
  })

  it('recognises metric names in PromQL (so the check above can fail)', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le, upstream) (rate(aggregate_upstream_call_duration_seconds_bucket{outcome!="ok"}[1m])))'))
      .toEqual(['aggregate_upstream_call_duration_seconds_bucket'])
    expect(metricNames('sum(rate(no_such_metric_total[5m])) / max(other_gauge)')).toEqual(['no_such_metric_total', 'other_gauge'])
  })

  it('uses the provisioned Prometheus data source', () => {
    const datasource = readFileSync(new URL('../../observability/grafana/provisioning/datasources/prometheus.yml', import.meta.url), 'utf8')
    expect(datasource).toContain('uid: prometheus')
    for (const panel of dashboard.panels) expect(panel.datasource).toEqual({ type: 'prometheus', uid: 'prometheus' })
  })
})

describe('the Prometheus config in observability/', () => {
  it.skipIf(!hasPromtool)('passes promtool check config', () => {
    const result = spawnSync('promtool', ['check', 'config', 'observability/prometheus.yml'], { encoding: 'utf8' })
    expect(result.status, result.stdout + result.stderr).toBe(0)
    expect(result.stdout).toContain('SUCCESS')
  })
})
