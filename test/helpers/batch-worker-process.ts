import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { eventually } from './mock-upstreams.js'

export interface BatchWorkerProcess {
  child: ChildProcess
  /** Everything it wrote, for failure messages. */
  output (): string
  /** SIGTERM, then waits for it to exit; resolves with its exit code. */
  stop (): Promise<number | null>
}

/** Starts `src/batch-worker.ts` as its own process, the way `npm run worker` runs the built one, and waits until it takes items. */
export async function startBatchWorker (env: Record<string, string>): Promise<BatchWorkerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/batch-worker.ts'], {
    env: { ...process.env, BATCH_CPU_CONCURRENCY: '1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout!.on('data', (chunk) => { output += chunk })
  child.stderr!.on('data', (chunk) => { output += chunk })
  try {
    await eventually(async () => output.includes('batch worker taking items') || child.exitCode !== null, 30_000, 'the batch worker to start')
  } catch (error) {
    child.kill('SIGKILL')
    throw new Error(`${(error as Error).message}:\n${output}`)
  }
  if (child.exitCode !== null) throw new Error(`the batch worker exited with ${child.exitCode}:\n${output}`)
  return {
    child,
    output: () => output,
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const [code] = await exited
      return code as number | null
    }
  }
}
