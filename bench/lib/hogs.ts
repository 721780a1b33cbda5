import { spawn, type ChildProcess } from 'node:child_process'

// CPU hogs: busy-loop processes that compete with the gateway for the machine's cores, as a noisy neighbour would.
// They are killed when the measurement ends, whatever happens: in a finally, on this process's exit and on SIGINT or
// SIGTERM. As a last resort each one also stops itself after `maxSeconds`, so even a SIGKILLed benchmark cannot leave
// one spinning.

const running = new Set<ChildProcess>()

function killAll () {
  for (const hog of running) {
    if (hog.exitCode === null && hog.signalCode === null) hog.kill('SIGKILL')
  }
  running.clear()
}

function onSignal (signal: NodeJS.Signals) {
  killAll()
  process.removeListener('SIGINT', onSignal)
  process.removeListener('SIGTERM', onSignal)
  process.kill(process.pid, signal)
}

let handlersInstalled = false
function installHandlers () {
  if (handlersInstalled) return
  handlersInstalled = true
  process.on('exit', killAll)
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}

/** Runs `measure` while `count` busy-loop processes spin; they are always killed before this returns or throws. */
export async function withCpuHogs<T> (count: number, maxSeconds: number, measure: () => Promise<T>): Promise<T> {
  installHandlers()
  const hogs: ChildProcess[] = []
  try {
    for (let index = 0; index < count; index++) {
      // for (;;) {}, bounded by a wall-clock limit as the safety net described above.
      const hog = spawn(process.execPath, ['-e', `const end = Date.now() + ${Math.ceil(maxSeconds * 1000)}; while (Date.now() < end) {}`], { stdio: 'ignore' })
      running.add(hog)
      hogs.push(hog)
      await new Promise<void>((resolve, reject) => {
        hog.once('spawn', resolve)
        hog.once('error', reject)
      })
    }
    return await measure()
  } finally {
    await Promise.all(hogs.map((hog) => new Promise<void>((resolve) => {
      running.delete(hog)
      if (hog.exitCode !== null || hog.signalCode !== null) return resolve()
      hog.once('exit', () => resolve())
      hog.kill('SIGKILL')
    })))
  }
}
