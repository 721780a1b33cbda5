import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, totalmem } from 'node:os'
import { barChartSvg } from './lib/charts.js'
import { createContext, startMocks, type BenchContext, type ScenarioResult } from './lib/context.js'
import { overhead } from './scenarios/overhead.js'
import { overlap } from './scenarios/overlap.js'
import { offload } from './scenarios/offload.js'
import { admission } from './scenarios/admission.js'
import { slowUpstream } from './scenarios/slow-upstream.js'
import { mergePlacement } from './scenarios/merge-placement.js'
import { cpuPerAggregate } from './scenarios/cpu-per-aggregate.js'
import { hostile } from './scenarios/hostile.js'
import { circuitBreaker, coalescing, hedging, retries } from './scenarios/resilience.js'
import { batch } from './scenarios/batch.js'

// `npm run bench`: every scenario, several alternating rounds, results in bench/results/ (JSON, markdown, SVG) and in
// the README's performance section. `npm run bench -- --quick`: one short round each (about a minute), written to
// bench/results/quick/ and nowhere else: CI runs it to prove the suite still works, with no thresholds.
// `--only=overlap,admission` runs a subset; a full run of a subset replaces those scenarios in bench/results/latest.json
// and the README, keeping the others from their last run (each says which run measured it).

const SCENARIOS: Record<string, (context: BenchContext) => Promise<ScenarioResult>> = {
  overlap,
  overhead,
  offload,
  admission,
  'slow-upstream': slowUpstream,
  'merge-placement': mergePlacement,
  'cpu-per-aggregate': cpuPerAggregate,
  hostile,
  'circuit-breaker': circuitBreaker,
  retries,
  hedging,
  coalescing,
  batch
}

const quick = process.argv.includes('--quick')
const only = process.argv.find((argument) => argument.startsWith('--only='))?.slice('--only='.length).split(',')
const root = new URL('../../', import.meta.url)
const resultsDirectory = new URL(quick ? 'bench/results/quick/' : 'bench/results/', root)

function gitCommit (): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return null
  }
}

const machine = {
  cores: availableParallelism(),
  cpu: cpus()[0]?.model ?? 'unknown',
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  platform: `${process.platform} ${process.arch}`,
  commit: gitCommit(),
  date: new Date().toISOString(),
  mode: quick ? 'quick' : 'full'
}

type Machine = typeof machine
const machineLine = (of: Machine) => `${of.cores} cores (${of.cpu}), ${of.memoryGiB} GiB, Node ${of.node}, ${of.platform}; commit ${of.commit ?? 'unknown'}; ${of.date.slice(0, 10)}; ${of.mode} run`

function markdown (results: Array<ScenarioResult & { machine?: Machine }>, chartPath: (id: string) => string): string {
  const lines = [
    `Machine: ${machineLine(machine)}.`,
    'Medians over alternating rounds, with the range over rounds in parentheses. Mocks, gateways, baselines and the load generator each run in their own process on this machine.',
    ''
  ]
  for (const result of results) {
    lines.push(`#### ${result.title}`, '', `![${result.title}](${chartPath(result.id)})`, '', `**${result.finding}**`, '')
    if (result.machine && result.machine.date !== machine.date) lines.push(`<sub>Measured in an earlier run: ${machineLine(result.machine)}.</sub>`, '')
    lines.push(`| ${result.table.headers.join(' | ')} |`, `|${result.table.headers.map(() => '---').join('|')}|`)
    for (const row of result.table.rows) lines.push(`| ${row.join(' | ')} |`)
    lines.push('', `<sub>${result.setup}</sub>`, '')
  }
  return lines.join('\n')
}

const BENCH_START = '<!-- bench:start -->'
const BENCH_END = '<!-- bench:end -->'

async function main () {
  console.log(`# benchmark (${machine.mode}): ${machine.cores} cores, ${machine.cpu}, Node ${machine.node}`)
  const startedAt = Date.now()
  const mocks = await startMocks()
  const context = createContext(mocks, { quick })
  const results: ScenarioResult[] = []
  // A scenario that fails (e.g. the mocks lack a mode it needs) is reported and skipped; the others still run and are
  // written, the README is left alone, and the run exits non-zero.
  const failures: Array<{ id: string, message: string }> = []
  try {
    for (const [id, scenario] of Object.entries(SCENARIOS)) {
      if (only && !only.includes(id)) continue
      const scenarioStartedAt = Date.now()
      console.log(`\n## ${id}`)
      try {
        const result = await scenario(context)
        results.push(result)
        console.log(`  ${result.finding}`)
      } catch (error) {
        failures.push({ id, message: (error as Error).message })
        console.error(`  FAILED: ${(error as Error).stack ?? error}`)
      }
      console.log(`  (${Math.round((Date.now() - scenarioStartedAt) / 1000)} s)`)
    }
  } finally {
    await Promise.all(mocks.services.map((service) => service.stop()))
  }

  mkdirSync(resultsDirectory, { recursive: true })
  // A full run with --only replaces those scenarios in the last full run's results and keeps the others, in the
  // order of SCENARIOS, each with the machine line of the run that measured it.
  const latestUrl = new URL('latest.json', resultsDirectory)
  let kept: ScenarioResult[] = []
  if (only && !quick && existsSync(latestUrl)) {
    const previous = JSON.parse(readFileSync(latestUrl, 'utf8')) as { results: Array<ScenarioResult & { machine?: typeof machine }>, machine: typeof machine }
    // A scenario that failed this time keeps its last result.
    kept = previous.results.filter((result) => !results.some((measured) => measured.id === result.id)).map((result) => ({ ...result, machine: result.machine ?? previous.machine }))
  }
  const order = Object.keys(SCENARIOS)
  const merged = [...kept, ...results.map((result) => ({ ...result, machine }))].sort((left, right) => order.indexOf(left.id) - order.indexOf(right.id))
  writeFileSync(latestUrl, JSON.stringify({ machine, results: merged, failures }, null, 2))
  for (const result of results) writeFileSync(new URL(`${result.id}.svg`, resultsDirectory), barChartSvg(result.chart))
  writeFileSync(new URL('summary.md', resultsDirectory), `# Benchmark results\n\n${markdown(merged, (id) => `${id}.svg`)}`)
  if (!quick && failures.length === 0) {
    const readmeUrl = new URL('README.md', root)
    const readme = readFileSync(readmeUrl, 'utf8')
    const start = readme.indexOf(BENCH_START)
    const end = readme.indexOf(BENCH_END)
    if (start !== -1 && end !== -1) {
      writeFileSync(readmeUrl, `${readme.slice(0, start + BENCH_START.length)}\n${markdown(merged, (id) => `bench/results/${id}.svg`)}\n${readme.slice(end)}`)
    }
  }
  console.log(`\n# wrote ${new URL('.', resultsDirectory).pathname} (latest.json, summary.md, ${results.length} charts) in ${Math.round((Date.now() - startedAt) / 1000)} s`)
  if (failures.length > 0) {
    console.error(`\n# ${failures.length} scenario(s) failed${quick ? '' : ' (README not rewritten)'}:\n${failures.map(({ id, message }) => `  ${id}: ${message}`).join('\n')}`)
    process.exitCode = 1
  }
}

await main()
