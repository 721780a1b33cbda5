import { setTimeout as sleep } from 'node:timers/promises'
import { channels, type AggregateRequestMessage } from '../contract/events.js'
import type { AggregateBody, Fallback, UpstreamReport, UpstreamReports } from '../contract/response.js'
import type { FallbackPolicy, UpstreamDeclaration, UpstreamName } from '../contract/upstreams.js'
import type { MergeInput, MergeResult, SectionInput } from '../merge/merge-sections.js'
import { callBudgetMs, startDeadline, type Deadline } from '../resilience/deadline.js'
import type { StaleCache } from '../resilience/stale-cache.js'
import {
  RequiredUpstreamBusyError, RequiredUpstreamCircuitOpenError, RequiredUpstreamFailedError, RequiredUpstreamTimeoutError, UpstreamCallError, UserNotFoundError
} from '../../errors.js'

/** What the call path did for one call (src/clients/pipeline.ts writes it): requests sent, a hedge, a shared call. */
export interface FetchTrace {
  attempts: number
  hedge?: 'won' | 'lost'
  coalesced?: boolean
}

/** Anything that can fetch a user's raw body from one upstream (see src/clients). */
export interface BodyFetcher {
  readonly timeoutMs: number
  fetchBody (userId: string, options: { signal: AbortSignal, budgetMs: number, requestId: string, trace: FetchTrace } & Partial<BatchCall>): Promise<Uint8Array>
  /** The upstream's circuit breaker now, if it has one: a required upstream whose circuit is open is not even tried. */
  circuit? (): { state: 'closed' | 'open' | 'half-open', openForMs: number } | null
}

/**
 * Runs the merge somewhere (worker pool or inline). Aborting the signal cancels a merge that has not started; one that
 * could not start within `budgetMs` is refused at once.
 */
export interface MergeRunner {
  /** `alone`: no other aggregate is in flight, so the event loop has nothing else to do while this merge runs. */
  run (input: MergeInput, options: { signal: AbortSignal, budgetMs: number, alone: boolean }): Promise<MergeResult>
  /** The same merge, here and now: for a degraded answer when the runner could not give one in time. */
  runHere (input: MergeInput): MergeResult
  /** The error a merge asked for now would be refused with, or null: checked before any upstream is called. */
  refusal (budgetMs: number): Error | null
}

/** How a batch item's calls differ: their own lane of each upstream, and their own try timeout and retries. */
interface BatchCall {
  lane: 'batch'
  perTryTimeoutMs: number
  retries: number
}

/** A batch item after stage 1: what every upstream answered, waiting for its merge. */
export interface FetchedItem {
  readonly userId: string
  readonly startedAt: number
  readonly outcomes: Readonly<Record<UpstreamName, CallOutcome>>
}

/** One upstream as the aggregator sees it: its declaration, settings and client. */
export interface AggregatedUpstream {
  readonly declaration: UpstreamDeclaration
  readonly fallback: FallbackPolicy
  readonly maxBodyElements: number
  readonly fetcher: BodyFetcher
}

export interface AggregatorOptions {
  upstreams: readonly AggregatedUpstream[]
  staleCache: StaleCache
  merge: MergeRunner
  /** Where a batch item merges (`mergeItem`); `merge` when absent. */
  batchMerge?: MergeRunner
  deadlineMs: number
  mergeReserveMs: number
  topK: number
}

/** An aggregate that failed after its upstreams were called: the error carries what each of them did. */
export type AggregateFailure = Error & { statusCode?: number, code?: string, upstreams?: UpstreamReports }

interface CallOutcome {
  body?: Uint8Array
  failure?: UpstreamCallError
  latencyMs: number
  trace: FetchTrace
}

const elapsedSince = (startedAt: number) => Math.round((performance.now() - startedAt) * 10) / 10

/** The client-facing error for a required upstream that produced nothing usable. */
function requiredUpstreamError (name: UpstreamName, userId: string, failure: UpstreamCallError | 'malformed'): Error {
  if (failure === 'malformed') return new RequiredUpstreamFailedError(name)
  if (failure.httpStatus === 404) return new UserNotFoundError(userId)
  switch (failure.status) {
    case 'timeout': return new RequiredUpstreamTimeoutError(name)
    case 'rejected': return new RequiredUpstreamBusyError(name)
    case 'circuit-open': return new RequiredUpstreamCircuitOpenError(name, retryAfterSeconds(failure.retryAfterMs ?? 0))
    default: return new RequiredUpstreamFailedError(name)
  }
}

const retryAfterSeconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000))

/** What one call did, before the merge says where its section came from. */
function callReport (outcome: CallOutcome, fetcher: BodyFetcher): UpstreamReport {
  const { failure, trace } = outcome
  const report: UpstreamReport = failure
    ? { status: failure.status, latencyMs: outcome.latencyMs, fallback: 'omitted', attempts: trace.attempts }
    : { status: 'ok', latencyMs: outcome.latencyMs, fallback: 'none', attempts: trace.attempts }
  if (failure?.httpStatus !== undefined) report.httpStatus = failure.httpStatus
  const circuit = fetcher.circuit?.()
  if (circuit) report.circuit = circuit.state
  if (trace.hedge) report.hedge = trace.hedge
  if (trace.coalesced) report.coalesced = true
  return report
}

/** Whether a policy may serve a last good value, and what comes after it. */
const fallbackSteps = (policy: FallbackPolicy) => ({ useStale: policy.startsWith('stale'), otherwise: policy.endsWith('omit') ? 'omit' as const : 'default' as const })

// A last-good body is handed back by the merge thread only when the cached one is missing or this close to expiry:
// moving every valid body back after every merge cost hand-off work for a value that had not changed.
const STALE_REFRESH_SHARE = 0.5

/**
 * Builds one aggregate: fans out to every upstream at once under one deadline, gives up early when a required upstream
 * fails, hands the bodies (with last-good values for the fallbacks) to the merge, and reports what each upstream did.
 * `aggregate` returns the body or throws a coded error; either way it publishes the outcome on `aggregator:request`.
 */
export function createAggregator (options: AggregatorOptions) {
  const { upstreams, staleCache, merge, batchMerge = merge, deadlineMs, mergeReserveMs, topK } = options
  const names = upstreams.map((upstream) => upstream.declaration.name)
  const required = upstreams.filter((upstream) => upstream.declaration.required).map((upstream) => upstream.declaration.name)
  const maxBodyElements = Object.fromEntries(upstreams.map((upstream) => [upstream.declaration.name, upstream.maxBodyElements]))
  // Decided once per upstream: whether its last good body may ever be served (never for a required one). Only those
  // bodies are cached, and only those are looked up.
  const servesStale = new Set(upstreams.filter((upstream) => !upstream.declaration.required && fallbackSteps(upstream.fallback).useStale).map((upstream) => upstream.declaration.name))
  const otherwise = Object.fromEntries(upstreams.map((upstream) => [upstream.declaration.name, upstream.declaration.required ? 'omit' : fallbackSteps(upstream.fallback).otherwise]))
  let inFlight = 0
  const requiredUpstreams = upstreams.filter((upstream) => upstream.declaration.required)

  /** A required upstream whose circuit is open, and for how long: a request fails at once, its other calls would be wasted. */
  function openRequiredCircuit (): { name: UpstreamName, openForMs: number } | null {
    for (const { declaration, fetcher } of requiredUpstreams) {
      const circuit = fetcher.circuit?.()
      if (circuit?.state === 'open') return { name: declaration.name, openForMs: circuit.openForMs }
    }
    return null
  }

  async function fanOut (userId: string, deadline: Deadline, requestId: string, batch?: BatchCall) {
    const calls = upstreams.map(async ({ declaration, fetcher }): Promise<CallOutcome> => {
      const startedAt = performance.now()
      const trace: FetchTrace = { attempts: 0 }
      try {
        // A batch item's calls share its deadline, sized for every try; an interactive call keeps the merge's reserve.
        const budgetMs = batch ? Math.floor(deadline.remainingMs()) : callBudgetMs(deadline, fetcher.timeoutMs, mergeReserveMs)
        const signal = deadline.callSignal(Math.max(0, budgetMs))
        const body = await fetcher.fetchBody(userId, { signal, budgetMs, requestId, trace, ...batch })
        return { body, latencyMs: elapsedSince(startedAt), trace }
      } catch (error) {
        // A required upstream failed: the other calls are of no use any more.
        if (declaration.required) deadline.abort(new DOMException('a required upstream failed', 'AbortError'))
        const failure = error instanceof UpstreamCallError ? error : new UpstreamCallError(declaration.name, 'error', { cause: error })
        return { failure, latencyMs: elapsedSince(startedAt), trace }
      }
    })
    const settled = await Promise.all(calls)
    const outcomes: Record<UpstreamName, CallOutcome> = {}
    names.forEach((name, index) => { outcomes[name] = settled[index]! })
    return outcomes
  }

  /** The merge's input: each upstream's body, and its last good one where that may be needed. */
  function mergeInput (userId: string, bodies: Partial<Record<UpstreamName, Uint8Array>>, staleWanted: (name: UpstreamName) => boolean): MergeInput {
    const sections: Record<UpstreamName, SectionInput> = {}
    const returnBodies: UpstreamName[] = []
    for (const name of names) {
      const section: SectionInput = { otherwise: otherwise[name]! }
      const body = bodies[name]
      if (body) {
        section.fresh = body
        if (servesStale.has(name) && staleCache.needsRefresh(name, userId, STALE_REFRESH_SHARE)) returnBodies.push(name)
      }
      if (servesStale.has(name) && staleWanted(name)) section.stale = staleCache.get(name, userId)
      sections[name] = section
    }
    return { userId, topK, sections, returnBodies, maxBodyElements }
  }

  /**
   * Merges, with last-good values only for the calls that failed. Only the merge can tell that a fresh body is
   * malformed; when one is and a last-good value exists, it merges once more with that value, reusing the valid bodies
   * the first merge handed back. The common case copies no cached body.
   */
  async function mergeWithFallbacks (userId: string, outcomes: Readonly<Record<UpstreamName, CallOutcome>>, deadline: Deadline, batch: boolean): Promise<MergeResult> {
    // A batch's merges always go to a pool (its own): the loop is busy with the batch's calls.
    const alone = !batch && inFlight === 1
    const runner = batch ? batchMerge : merge
    const fresh = Object.fromEntries(names.map((name) => [name, outcomes[name]!.body]))
    const first = await runner.run(mergeInput(userId, fresh, (name) => !outcomes[name]!.body), { signal: deadline.signal, budgetMs: deadline.remainingMs(), alone })
    const replaceable = first.malformed.filter((name) => servesStale.has(name) && staleCache.get(name, userId) !== undefined)
    if (replaceable.length === 0) return first
    // A merge that found a malformed body hands every valid one back, for this second merge.
    const kept = first.validFresh
    const second = await runner.run(mergeInput(userId, kept, (name) => !kept[name]), { signal: deadline.signal, budgetMs: deadline.remainingMs(), alone })
    return { ...second, malformed: first.malformed }
  }

  async function aggregate (userId: string, { signal, requestId, queuedMs = 0 }: { signal: AbortSignal, requestId: string, queuedMs?: number }): Promise<AggregateBody> {
    const startedAt = performance.now()
    let slowestCallMs = 0
    let body: AggregateBody | undefined
    let failure: AggregateFailure | undefined
    // The deadline counts from arrival: time spent in the admission queue is part of it.
    const budgetMs = Math.max(0, deadlineMs - queuedMs)
    let deadline: Deadline | undefined
    inFlight++
    try {
      // Refuse before the fan-out, not after it: five upstream calls whose merge will be refused are pure waste, and
      // under overload that waste is what makes goodput collapse. Before the deadline too: a refusal sets no timer.
      const refused = merge.refusal(budgetMs - mergeReserveMs)
      if (refused) throw refused
      const open = openRequiredCircuit()
      if (open) throw new RequiredUpstreamCircuitOpenError(open.name, retryAfterSeconds(open.openForMs))
      deadline = startDeadline(budgetMs, signal)
      const outcomes = await fanOut(userId, deadline, requestId)
      for (const name of names) slowestCallMs = Math.max(slowestCallMs, outcomes[name]!.latencyMs)
      body = await mergeAndReport(userId, outcomes, deadline, startedAt)
      return body
    } catch (error) {
      failure = error as AggregateFailure
      throw error
    } finally {
      inFlight--
      deadline?.release()
      if (channels.request.hasSubscribers) {
        const durationMs = performance.now() - startedAt
        const message: AggregateRequestMessage = {
          requestId,
          userId,
          statusCode: failure ? failure.statusCode ?? 500 : 200,
          complete: body?.meta.complete === true,
          durationMs,
          ownMs: Math.max(0, durationMs - slowestCallMs),
          upstreams: body?.meta.upstreams ?? failure?.upstreams ?? null
        }
        if (failure?.code) message.code = failure.code
        channels.request.publish(message)
      }
    }
  }

  async function mergeAndReport (userId: string, outcomes: Readonly<Record<UpstreamName, CallOutcome>>, deadline: Deadline, startedAt: number, batch = false): Promise<AggregateBody> {
    const callReports: UpstreamReports = {}
    upstreams.forEach(({ declaration: { name }, fetcher }) => { callReports[name] = callReport(outcomes[name]!, fetcher) })
    const fail = (error: AggregateFailure, upstreams: UpstreamReports) => Object.assign(error, { upstreams })

    const failedRequired = required.find((name) => outcomes[name]!.failure)
    if (failedRequired) throw fail(requiredUpstreamError(failedRequired, userId, outcomes[failedRequired]!.failure!), callReports)

    // The required bodies are small and the merge thread takes the originals: a copy stays here for a degraded merge.
    const requiredBodies = Object.fromEntries(required.map((name) => [name, outcomes[name]!.body!.slice()]))
    let merged: MergeResult
    let mergeFailed = false
    try {
      // Past the deadline already, a merge could only be refused: answer with what is here.
      if (deadline.signal.aborted) throw deadline.signal.reason
      merged = await raceDeadline(mergeWithFallbacks(userId, outcomes, deadline, batch), deadline.signal)
    } catch {
      // The merge could not answer before the deadline (its thread died, ran out of memory, or is still running): the
      // required sections are merged here, on the loop — they are small — and every optional one gets its static
      // fallback, so the request answers 200 partial instead of wasting the fan-out it already paid for.
      merged = merge.runHere(mergeInput(userId, requiredBodies, () => false))
      mergeFailed = true
    }

    const reports: UpstreamReports = {}
    for (const name of names) {
      const fallback: Fallback = merged.sources[name]!
      let status = merged.malformed.includes(name) ? 'malformed' : callReports[name]!.status
      if (mergeFailed && status === 'ok' && !required.includes(name)) status = 'merge-failed'
      reports[name] = { ...callReports[name]!, status, fallback }
      // Only a body that went through a whole merge is kept as a last good value.
      const valid = merged.validFresh[name]
      if (valid && servesStale.has(name)) staleCache.set(name, userId, valid)
    }

    const malformedRequired = required.find((name) => merged.malformed.includes(name))
    if (malformedRequired) throw fail(requiredUpstreamError(malformedRequired, userId, 'malformed'), reports)

    const complete = names.every((name) => reports[name]!.status === 'ok')
    return { userId, ...merged.sections, meta: { complete, durationMs: elapsedSince(startedAt), upstreams: reports } }
  }

  /**
   * Stage 1 of a batch item (src/lib/batch): every upstream called at once on the batch's lane, each try within
   * `perTryTimeoutMs`, the item's deadline sized for every try. Never throws: failures are in the outcomes.
   */
  async function fetchItem (userId: string, { signal, requestId, perTryTimeoutMs, retries }: { signal: AbortSignal, requestId: string, perTryTimeoutMs: number, retries: number }): Promise<FetchedItem> {
    for (;;) {
      // While a required upstream's circuit is open every item would fail at once: the batch waits for it instead
      // (until its own deadline), so a blip does not fail thousands of items. One item at a time gets to probe.
      for (let open = openRequiredCircuit(); open !== null && !signal.aborted; open = openRequiredCircuit()) await pause(open.openForMs, signal)
      const startedAt = performance.now()
      // Every try, and a fully jittered backoff before a retry (at most 25 ms by default) with room to spare.
      const deadline = startDeadline(perTryTimeoutMs * (retries + 1) + BATCH_RETRY_ALLOWANCE_MS * retries, signal)
      let outcomes: Record<UpstreamName, CallOutcome>
      try {
        outcomes = await fanOut(userId, deadline, requestId, { lane: 'batch', perTryTimeoutMs, retries })
      } finally {
        deadline.release()
      }
      // Refused while another item probes the half-open circuit: wait for the verdict and try again.
      const refused = required.map((name) => outcomes[name]!.failure).find((failure) => failure?.status === 'circuit-open')
      if (refused === undefined || signal.aborted) return { userId, startedAt, outcomes }
      await pause(refused.retryAfterMs ?? BATCH_RETRY_ALLOWANCE_MS, signal)
    }
  }

  /** Stage 2 of a batch item: its merge, on the pool, within `budgetMs`; the body, or a coded error as `aggregate` throws. */
  async function mergeItem (item: FetchedItem, { signal, budgetMs }: { signal: AbortSignal, budgetMs: number }): Promise<AggregateBody> {
    const deadline = startDeadline(budgetMs, signal)
    try {
      return await mergeAndReport(item.userId, item.outcomes, deadline, item.startedAt, true)
    } finally {
      deadline.release()
    }
  }

  return { aggregate, fetchItem, mergeItem }
}

// Time a batch item's deadline allows beyond its tries, for the backoff before a retry.
const BATCH_RETRY_ALLOWANCE_MS = 50

/** Waits `ms` (at least one), or until `signal` aborts. */
const pause = (ms: number, signal: AbortSignal) => sleep(Math.max(1, ms), undefined, { signal }).catch(() => {})

/**
 * Settles with `work`, or rejects once `signal` aborts: the request answers at its deadline, not when a merge ends.
 * The loser's outcome is always handled: a merge that fails after the deadline must not become an unhandled rejection
 * (which would take the process down).
 */
function raceDeadline<T> (work: Promise<T>, signal: AbortSignal): Promise<T> {
  work.catch(() => {})
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

export type Aggregator = ReturnType<typeof createAggregator>
