import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { waitUntilHealthy } from '../../scripts/wait-until-healthy.js'

// Starting, reading and stopping the processes a benchmark measures: mocks, gateways and baselines, each its own
// process, run from the build (dist/), as in production.

const DIST = join(dirname(fileURLToPath(import.meta.url)), '../..')
export const SCRIPTS = {
  mock: join(DIST, 'mock-services/main.js'),
  gateway: join(DIST, 'src/server.js'),
  serialBaseline: join(DIST, 'bench/baselines/serial.js'),
  naiveBaseline: join(DIST, 'bench/baselines/naive.js'),
  bareFastify: join(DIST, 'bench/baselines/bare-fastify.js'),
  floorBaseline: join(DIST, 'bench/baselines/floor.js'),
  loadGenerator: join(DIST, 'bench/load-generator.js'),
  clients: join(DIST, 'bench/clients.js')
}

export interface Service {
  readonly name: string
  readonly origin: string
  readonly process: ChildProcess
  /** CPU seconds (user + system) used so far, all threads; null where /proc is not available. */
  cpuSeconds (): number | null
  /** CPU seconds used so far by the main thread alone (the event loop); null where /proc is not available. */
  mainThreadCpuSeconds (): number | null
  /** CPU seconds used so far by the threads at OS niceness `nice` (a gateway's batch merge threads at theirs). */
  niceThreadsCpuSeconds (nice: number): number | null
  /** Resident memory in bytes; null where /proc is not available. */
  rssBytes (): number | null
  stop (): Promise<void>
}

const CLOCK_TICKS_PER_SECOND = 100
const PAGE_SIZE = 4096

/** `/proc/<pid>/stat`, or with `thread` the stat of one of its threads (the main thread's id is the process's). */
function procStat (pid: number, thread?: number): string[] | null {
  try {
    const stat = readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8')
    // Fields after the command name, which is in parentheses and may contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return null
  }
}

// utime and stime are fields 14 and 15 of /proc/<pid>/stat (11 and 12 after the command name).
const cpuSecondsOf = (fields: string[] | null) => fields ? (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND : null

/** Starts `script` with `env`, waits until `origin + healthPath` answers 200. */
export async function startService (name: string, script: string, args: string[], env: Record<string, string>, origin: string, healthPath = '/health'): Promise<Service> {
  const child = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  await waitUntilHealthy(`${origin}${healthPath}`, {
    timeoutMs: 20_000,
    stillWorthIt: () => {
      if (child.exitCode !== null) throw new Error(`${name}: the process exited with code ${child.exitCode}`)
      return true
    }
  })
  const pid = child.pid!
  return {
    name,
    origin,
    process: child,
    cpuSeconds () {
      return cpuSecondsOf(procStat(pid))
    },
    mainThreadCpuSeconds () {
      return cpuSecondsOf(procStat(pid, pid))
    },
    niceThreadsCpuSeconds (nice) {
      let threads: string[]
      try {
        threads = readdirSync(`/proc/${pid}/task`)
      } catch {
        return null
      }
      // nice is field 19 of /proc/<pid>/stat (16 after the command name).
      return threads.map((thread) => procStat(pid, Number(thread))).filter((fields) => fields !== null && Number(fields[16]) === nice)
        .reduce((sum, fields) => sum + cpuSecondsOf(fields)!, 0)
    },
    rssBytes () {
      const fields = procStat(pid)
      return fields ? Number(fields[21]) * PAGE_SIZE : null
    },
    async stop () {
      if (child.exitCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await Promise.race([exited, sleep(15_000).then(() => child.kill('SIGKILL'))])
    }
  }
}

/** Samples a service's RSS every 200 ms until stopped; returns the peak. */
export function watchPeakRss (service: Service): () => number | null {
  let peak = service.rssBytes()
  const timer = setInterval(() => {
    const rss = service.rssBytes()
    if (rss !== null && (peak === null || rss > peak)) peak = rss
  }, 200)
  return () => {
    clearInterval(timer)
    return peak
  }
}
