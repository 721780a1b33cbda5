import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createResultFileWriter, followResultFile } from '../../../src/lib/batch/result-file.js'
import { eventually } from '../../helpers/mock-upstreams.js'

// A batch's result file through its writer and a follower, as src/lib/batch/batches.ts uses them.
describe('result file', () => {
  let directory: string
  beforeEach(async () => { directory = await mkdtemp(join(tmpdir(), 'result-file-')) })
  afterEach(async () => { await rm(directory, { recursive: true, force: true }) })

  function follower (path: string, signal = new AbortController().signal) {
    let written = 0
    let ended = false
    let wake: (() => void) | undefined
    const changed = () => { const resolve = wake; wake = undefined; resolve?.() }
    const chunks = followResultFile(path, { written: () => written, ended: () => ended, changed: () => new Promise<void>((resolve) => { wake = resolve }) }, signal)
    let received = ''
    const text = (async () => {
      for await (const chunk of chunks) received += chunk.toString()
      return received
    })()
    return {
      text,
      received: () => received,
      waiting: () => wake !== undefined,
      onWritten: (bytes: number) => { written += bytes; changed() },
      end: () => { ended = true; changed() },
      wake: changed
    }
  }

  it('gives a follower that started before the first line every line once, in order, and ends with the writer', async () => {
    const path = join(directory, 'batch.ndjson')
    const reader = follower(path)
    const writer = await createResultFileWriter(path, reader.onWritten)
    const lines = Array.from({ length: 2000 }, (_, index) => `{"index":${index},"pad":"${'x'.repeat(index % 300)}"}\n`)
    for (const line of lines) await writer.append(Buffer.from(line))
    await writer.close()
    reader.end()
    expect(await reader.text).toBe(lines.join(''))
  })

  it('writes lines together, not one write each, and counts only what is on disk', async () => {
    const path = join(directory, 'batch.ndjson')
    const writes: number[] = []
    const writer = await createResultFileWriter(path, (bytes) => writes.push(bytes))
    for (let index = 0; index < 100; index++) await writer.append(Buffer.from(`{"index":${index}}\n`))
    // Nothing is counted until a write has finished.
    expect(writes).toEqual([])
    await writer.close()
    expect(writes.length).toBeLessThan(5)
    expect(writes.reduce((sum, bytes) => sum + bytes, 0)).toBe(Array.from({ length: 100 }, (_, index) => `{"index":${index}}\n`).join('').length)
  })

  it('stops a follower waiting for more when its signal aborts, while the writer is still open', async () => {
    const path = join(directory, 'batch.ndjson')
    const controller = new AbortController()
    const reader = follower(path, controller.signal)
    const writer = await createResultFileWriter(path, reader.onWritten)
    await writer.append(Buffer.from('{"index":0}\n'))
    // The line is written and read, and the follower is waiting for more.
    await eventually(async () => reader.received() === '{"index":0}\n' && reader.waiting(), 5000, 'the follower to read the line and wait')
    controller.abort()
    reader.wake()
    expect(await reader.text).toBe('{"index":0}\n')
    await writer.close()
  })
})
