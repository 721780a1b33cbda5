// Live dashboard: one snapshot a second from /dashboard/stream (server-sent events), drawn with the DOM only.
// Every value reaches the page through textContent or a numeric attribute, never as HTML.

const HISTORY = 60
const SVG = 'http://www.w3.org/2000/svg'
const history = { eventLoop: [], poolQueue: [], admissionLimit: [], upstreams: new Map() }

const byId = (id) => document.getElementById(id)
const percent = (share) => `${(share * 100).toFixed(share > 0 && share < 0.1 ? 1 : 0)}%`
const ms = (value) => (value === null || value === undefined ? '–' : `${value} ms`)
const megabytes = (bytes) => `${Math.round(bytes / 1048576)} MB`

function setText (element, text) {
  if (element.textContent !== text) element.textContent = text
}

function push (series, value) {
  series.push(Number.isFinite(value) ? value : 0)
  if (series.length > HISTORY) series.shift()
}

/** Draws `series` as a sparkline scaled to its own maximum (at least `floor`, so a flat line stays low). */
function drawSparkline (svg, series, floor) {
  const top = Math.max(floor, ...series)
  const points = series.map((value, index) => `${(index / (HISTORY - 1)) * 120},${30 - (value / top) * 28 - 1}`).join(' ')
  let line = svg.querySelector('polyline')
  if (!line) {
    line = document.createElementNS(SVG, 'polyline')
    svg.appendChild(line)
  }
  line.setAttribute('points', points)
}

function upstreamPanel (name) {
  let panel = document.querySelector(`[data-upstream="${CSS.escape(name)}"]`)
  if (panel) return panel
  panel = byId('upstream-template').content.firstElementChild.cloneNode(true)
  panel.setAttribute('data-upstream', name)
  panel.querySelector('.name').textContent = name
  byId('upstreams').appendChild(panel)
  history.upstreams.set(name, { latency: [], failure: [] })
  return panel
}

function renderUpstream (name, stats) {
  const panel = upstreamPanel(name)
  const field = (selector) => panel.querySelector(selector)
  // An open circuit is a failing upstream even though its calls, not being made, show no errors.
  const health = stats.circuit === 'open' ? 'failing' : stats.circuit === 'half-open' && stats.health === 'ok' ? 'degraded' : stats.health
  panel.setAttribute('data-health', health)
  setText(field('.health'), health)
  setText(field('.rate'), String(stats.rate))
  setText(field('.latency'), `${ms(stats.p50Ms)} / ${ms(stats.p99Ms)}`)
  setText(field('.errors'), percent(stats.errorRate))
  setText(field('.timeouts'), percent(stats.timeoutRate))
  setText(field('.rejected'), percent(stats.rejectedRate))
  setText(field('.fallbacks'), percent(stats.fallbackRate))
  setText(field('.in-flight'), `${stats.inFlight} / ${stats.concurrency}`)
  setText(field('.queued'), `${stats.queued} / ${stats.maxQueue}`)
  setText(field('.circuit'), stats.circuit ?? 'none')
  field('.circuit').setAttribute('data-circuit', stats.circuit ?? 'none')
  setText(field('.retries'), String(stats.retries))
  setText(field('.hedges'), `${stats.hedgesWon} / ${stats.hedges}`)
  setText(field('.coalesced'), String(stats.coalesced))
  field('.fill').style.width = `${Math.min(100, (stats.inFlight / Math.max(1, stats.concurrency)) * 100)}%`
  const series = history.upstreams.get(name)
  push(series.latency, stats.p99Ms ?? 0)
  push(series.failure, stats.errorRate + stats.timeoutRate + stats.rejectedRate)
  drawSparkline(field('.latency-chart'), series.latency, 50)
  drawSparkline(field('.failure-chart'), series.failure, 1)
}

function renderAdmission (admission, shedByReason) {
  const panel = byId('admission')
  const shed = Object.entries(shedByReason).map(([reason, count]) => `${reason} ${count}`).join(' · ')
  setText(byId('admission-shed'), shed || 'none')
  if (!admission) {
    panel.setAttribute('data-health', 'idle')
    setText(byId('admission-in-flight'), 'off')
    return
  }
  const full = admission.queued > 0
  panel.setAttribute('data-health', full && admission.queued >= admission.maxQueue ? 'failing' : full ? 'degraded' : 'ok')
  setText(byId('admission-in-flight'), `${admission.inFlight} / ${admission.limit}`)
  setText(byId('admission-queued'), `${admission.queued} / ${admission.maxQueue}`)
  setText(byId('admission-own-time'), `${ms(admission.recentOwnMs)} / ${ms(admission.baselineOwnMs)}`)
  byId('admission-bar').style.width = `${Math.min(100, (admission.inFlight / Math.max(1, admission.limit)) * 100)}%`
  push(history.admissionLimit, admission.limit)
  drawSparkline(byId('admission-chart'), history.admissionLimit, 10)
}

/** Polyline points for utilisation samples (0..1), oldest at the left, the newest at the right edge. */
function utilisationPoints (samples, key) {
  const span = Math.max(1, samples.length - 1)
  return samples.map((sample, index) => `${(index / span) * 120},${30 - Math.min(1, sample[key]) * 28 - 1}`).join(' ')
}

function renderBatches (batches) {
  const section = byId('batches')
  byId('no-batches').hidden = batches.length > 0
  const shown = new Set(batches.map((batch) => batch.id))
  for (const panel of section.querySelectorAll('[data-batch]')) if (!shown.has(panel.getAttribute('data-batch'))) panel.remove()
  for (const batch of batches) {
    let panel = section.querySelector(`[data-batch="${CSS.escape(batch.id)}"]`)
    if (!panel) {
      panel = byId('batch-template').content.firstElementChild.cloneNode(true)
      panel.setAttribute('data-batch', batch.id)
      panel.querySelector('.name').textContent = batch.id.slice(0, 8)
      section.appendChild(panel)
    }
    const field = (selector) => panel.querySelector(selector)
    const health = batch.status === 'running' || batch.status === 'completed' ? (batch.failed > 0 ? 'degraded' : 'ok') : batch.status === 'queued' ? 'idle' : 'failing'
    panel.setAttribute('data-health', health)
    panel.setAttribute('data-status', batch.status)
    setText(field('.status'), batch.status)
    setText(field('.done'), `${batch.done} / ${batch.total}`)
    const latest = batch.samples.at(-1)
    setText(field('.rate'), latest ? String(Math.round(latest.itemsPerSecond)) : '–')
    setText(field('.results'), `${batch.ok} / ${batch.partial} / ${batch.failed}`)
    setText(field('.stages'), `${batch.stages.io.inFlight}/${batch.stages.io.limit} · ${batch.stages.queue.size}/${batch.stages.queue.limit} · ${batch.stages.cpu.busy}/${batch.stages.cpu.threads}`)
    field('.fill').style.width = `${Math.min(100, (batch.done / Math.max(1, batch.total)) * 100)}%`
    for (const key of ['io', 'queue', 'cpu']) field(`polyline.${key}`).setAttribute('points', utilisationPoints(batch.samples, key))
  }
}

function render (snapshot) {
  const { requests, upstreams, mergePool, eventLoop, memory } = snapshot
  setText(byId('requests-rate'), String(requests.rate))
  setText(byId('requests-latency'), `${ms(requests.p50Ms)} / ${ms(requests.p99Ms)}`)
  setText(byId('requests-partial'), percent(requests.partialRate))
  setText(byId('shed-rate'), String(snapshot.shedRate))
  setText(byId('shed-total'), `${snapshot.shedTotal} since start`)
  setText(byId('event-loop'), `${eventLoop.delayP99Ms} ms p99 · ${percent(eventLoop.utilization)} busy`)
  setText(byId('memory'), `${megabytes(memory.rssBytes)} RSS · ${megabytes(memory.heapUsedBytes)} heap`)
  setText(byId('window'), `(last ${snapshot.windowSeconds} s; health from the last 2 s)`)
  push(history.eventLoop, eventLoop.delayP99Ms)
  drawSparkline(byId('event-loop-chart'), history.eventLoop, 20)

  renderAdmission(snapshot.admission, snapshot.shedByReason)
  renderBatches(snapshot.batches)
  for (const [name, stats] of Object.entries(upstreams)) renderUpstream(name, stats)

  const pool = byId('pool')
  const saturated = mergePool.queueSize >= mergePool.maxQueue && mergePool.maxQueue > 0
  pool.setAttribute('data-health', saturated ? 'failing' : mergePool.queueSize > 0 ? 'degraded' : mergePool.threads > 0 ? 'ok' : 'idle')
  setText(byId('pool-busy'), `${mergePool.busyThreads} / ${mergePool.threads}`)
  setText(byId('pool-queue'), `${mergePool.queueSize} / ${mergePool.maxQueue}`)
  setText(byId('pool-wait'), ms(mergePool.waitP99Ms))
  setText(byId('pool-run'), ms(mergePool.runP99Ms))
  setText(byId('pool-tasks'), mergePool.tasks.toLocaleString('en'))
  setText(byId('pool-scored'), mergePool.candidatesScored.toLocaleString('en'))
  byId('pool-queue-bar').style.width = `${Math.min(100, (mergePool.queueSize / Math.max(1, mergePool.maxQueue)) * 100)}%`
  push(history.poolQueue, mergePool.queueSize)
  drawSparkline(byId('pool-chart'), history.poolQueue, 4)

  const connection = byId('connection')
  connection.setAttribute('data-state', 'live')
  setText(connection, `live · ${new Date(snapshot.at).toLocaleTimeString()}`)
}

function connect () {
  const stream = new EventSource('/dashboard/stream')
  stream.onmessage = (event) => render(JSON.parse(event.data))
  stream.onerror = () => {
    const connection = byId('connection')
    connection.setAttribute('data-state', 'lost')
    setText(connection, 'connection lost, retrying…')
  }
}

connect()
