import { createWriteStream, readFileSync } from 'node:fs'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import { isFinished, type BatchView } from '../src/lib/batch/batch-contract.js'

// `npm run batch -- --count 10000` (or `--ids users.txt`, one id per line): submits a batch to a running gateway, shows
// its progress on stderr (a bar, the rate and the time left), writes its NDJSON results to stdout or `--out`, and
// cancels the batch on Ctrl-C. Exit code 0 when the batch completed, 1 when it ended otherwise, 130 on Ctrl-C.

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.GATEWAY_URL ?? 'http://127.0.0.1:3000' },
    count: { type: 'string' },
    ids: { type: 'string' },
    prefix: { type: 'string', default: 'user' },
    out: { type: 'string' }
  }
})

function userIds (): string[] {
  if (values.ids) return readFileSync(values.ids, 'utf8').split('\n').map((line) => line.trim()).filter((line) => line !== '')
  const count = Number(values.count)
  if (!Number.isInteger(count) || count < 1) {
    console.error('usage: npm run batch -- --count N | --ids FILE [--url http://127.0.0.1:3000] [--out results.ndjson] [--prefix user]')
    process.exit(2)
  }
  return Array.from({ length: count }, (_, index) => `${values.prefix}-${index}`)
}

// What the progress bar shows: a batch's view as GET /batches/:id and its events give it.
type Progress = Omit<BatchView, 'id' | 'stages'>

const BAR = 30

/** One line on stderr, redrawn in place on a terminal, printed every few seconds otherwise. */
function render (progress: Progress, startedAt: number): string {
  const share = progress.total === 0 ? 1 : progress.done / progress.total
  const seconds = (performance.now() - startedAt) / 1000
  const rate = seconds > 0 ? progress.done / seconds : 0
  const eta = rate > 0 ? Math.ceil((progress.total - progress.done) / rate) : null
  const filled = Math.round(share * BAR)
  return `[${'#'.repeat(filled)}${'-'.repeat(BAR - filled)}] ${progress.done}/${progress.total} ${Math.floor(share * 100)}% ` +
    `${Math.round(rate)}/s ETA ${eta === null ? '?' : `${eta}s`} · ok ${progress.ok} partial ${progress.partial} failed ${progress.failed} · ${progress.status}`
}

async function followEvents (id: string, signal: AbortSignal, onProgress: (progress: Progress) => void) {
  const response = await fetch(`${values.url}/batches/${id}/events`, { signal })
  const decoder = new TextDecoder()
  let buffered = ''
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true })
    let end: number
    while ((end = buffered.indexOf('\n\n')) !== -1) {
      const event = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      const data = event.split('\n').find((line) => line.startsWith('data: '))
      if (data) onProgress(JSON.parse(data.slice('data: '.length)) as Progress)
    }
  }
}

async function main () {
  const ids = userIds()
  const created = await fetch(`${values.url}/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userIds: ids }) })
  const body = await created.json() as { id?: string, message?: string }
  if (created.status !== 202 || !body.id) {
    console.error(`the gateway refused the batch: ${created.status} ${body.message ?? ''}`)
    process.exit(1)
  }
  const id = body.id
  console.error(`batch ${id}: ${ids.length} users`)
  const startedAt = performance.now()
  const stop = new AbortController()
  let last: Progress = { status: 'queued', total: ids.length, done: 0, ok: 0, partial: 0, failed: 0, retried: 0, durationMs: null }
  let printedAt = 0
  const draw = () => {
    if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${render(last, startedAt)}`)
    else if (performance.now() - printedAt > 2000 || isFinished(last.status)) {
      printedAt = performance.now()
      process.stderr.write(`${render(last, startedAt)}\n`)
    }
  }

  // Ctrl-C cancels the batch on the gateway (its calls are aborted there), then exits.
  let interrupted = false
  process.once('SIGINT', () => {
    interrupted = true
    stop.abort()
    fetch(`${values.url}/batches/${id}`, { method: 'DELETE' })
      .then(async (response) => { last = await response.json() as Progress })
      .catch(() => {})
      .finally(() => {
        process.stderr.write(`\ncancelled: ${last.done}/${last.total} done\n`)
        process.exit(130)
      })
  })

  const events = followEvents(id, stop.signal, (progress) => { last = progress; draw() }).catch(() => {})
  const results = await fetch(`${values.url}/batches/${id}/results`, { signal: stop.signal })
  const output = values.out ? createWriteStream(values.out) : process.stdout
  try {
    await pipeline(Readable.fromWeb(results.body as never), output, { signal: stop.signal })
  } catch (error) {
    if (!interrupted) throw error
    return
  }
  await events
  last = await (await fetch(`${values.url}/batches/${id}`)).json() as Progress
  draw()
  if (process.stderr.isTTY) process.stderr.write('\n')
  console.error(`${last.status} in ${((last.durationMs ?? 0) / 1000).toFixed(1)} s: ok ${last.ok}, partial ${last.partial}, failed ${last.failed}, retried ${last.retried}${last.reason ? ` (${last.reason})` : ''}`)
  process.exitCode = last.status === 'completed' ? 0 : 1
}

await main().catch((error: Error & { cause?: { code?: string } }) => {
  // A gateway that is not there (or goes away) is a message, not a stack trace.
  console.error(`\nbatch: ${error.cause?.code ? `cannot reach the gateway at ${values.url} (${error.cause.code})` : error.message}`)
  process.exit(1)
})
