import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildGateway } from '../helpers/build-gateway.js'
import { startMockUpstreams, type MockUpstreams } from '../helpers/mock-upstreams.js'

let upstreams: MockUpstreams
beforeAll(async () => { upstreams = await startMockUpstreams() })
afterAll(async () => { await upstreams?.close() })

describe('closing the gateway', () => {
  it('does not wait for a connection that never sent a request', async () => {
    const gateway = await buildGateway({ ...upstreams.env }, { listen: true })
    const { port } = new URL(gateway.origin)
    // A client's spare keep-alive connection: open, silent. Node would hold close() for it until its headers timeout (10 s).
    const silent = connect(Number(port), '127.0.0.1')
    await new Promise((resolve) => silent.once('connect', resolve))
    const closed = new Promise((resolve) => silent.once('close', resolve))
    const startedAt = performance.now()
    await gateway.close()
    await closed
    expect(performance.now() - startedAt).toBeLessThan(5000)
  })
})
