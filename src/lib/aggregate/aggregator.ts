import { channel } from 'node:diagnostics_channel'
import { callBudgetMs, startDeadline, type Deadline } from '../resilience/deadline.js'
import {
  RequiredUpstreamBusyError, RequiredUpstreamFailedError, RequiredUpstreamTimeoutError, UpstreamCallError, UserNotFoundError
} from '../../errors.js'
import { fallbackSteps, type FallbackPolicy } from './fallback-policy.js'
import { mergeSections, type AggregateSections, type MergeInput, type MergeResult, type SectionInput } from '../merge/merge-sections.js'
import type { StaleCache } from '../resilience/stale-cache.js'
import { UPSTREAM_NAMES, UPSTREAMS, type UpstreamName } from '../contract/upstreams.js'

/**
 * What happened to one upstream in one request, as the response's `meta` reports it. `merge-failed`: the call
 * answered, but the merge could not use the answer before the deadline (its thread died or ran out of time).
 */
export type UpstreamStatus = 'ok' | 'timeout' | 'error' | 'rejected' | 'malformed' | 'cancelled' | 'merge-failed'
export type FallbackKind = 'none' | 'stale' | 'default' | 'omitted'

export interface UpstreamReport {
  status: UpstreamStatus
  latencyMs: number
  fallback: FallbackKind
  /** The upstream's HTTP status when it answered with a non-2xx one. */
  httpStatus?: number
}

export type UpstreamReports = Record<UpstreamName, UpstreamReport>

export interface AggregateBody extends AggregateSections {
  userId: string
  meta: { complete: boolean, durationMs: number, upstreams: UpstreamReports }
}

export type AggregateOutcome =
  | { ok: true, body: AggregateBody, upstreams: UpstreamReports }
  | { ok: false, error: Error, upstreams: UpstreamReports | null }

/** Anything that can fetch a user's raw body from one upstream (see src/clients). */
export interface BodyFetcher {
  readonly timeoutMs: number
  fetchBody (userId: string, options: { signal: AbortSignal, budgetMs: number, requestId: string }): Promise<Uint8Array>
}

/**
 * Runs the merge somewhere (worker pool or inline). Aborting the signal cancels a merge that has not started; one that
 * could not start within `budgetMs` is refused at once.
 */
export interface MergeRunner {
  /** `alone`: no other aggregate is in flight, so the event loop has nothing else to do while this merge runs. */
  (input: MergeInput, options: { signal: AbortSignal, budgetMs: number, alone: boolean }): Promise<MergeResult>
  /** The error a merge asked for now would be refused with, or null: checked before any upstream is called. */
  refusal (budgetMs: number): Error | null
}

export interface AggregatorOptions {
  fetchers: Record<UpstreamName, BodyFetcher>
  fallbacks: Record<UpstreamName, FallbackPolicy>
  staleCache: StaleCache
  merge: MergeRunner
  deadlineMs: number
  mergeReserveMs: number
  topK: number
  maxBodyElements: Record<UpstreamName, number>
}

/** Published on {@link AGGREGATE_REQUEST_CHANNEL} once per aggregate whose upstreams were called. */
export interface AggregateRequestMessage {
  userId: string
  ok: boolean
  durationMs: number
  /** Time not spent waiting on the slowest upstream: what this process added (queueing, merge, hand-offs). */
  ownMs: number
}

/** `node:diagnostics_channel` name of {@link AggregateRequestMessage}; admission subscribes to steer its limit. */
export const AGGREGATE_REQUEST_CHANNEL = 'aggregator:request'
const requestChannel = channel(AGGREGATE_REQUEST_CHANNEL)

interface CallOutcome {
  body?: Uint8Array
  failure?: UpstreamCallError
  latencyMs: number
}

const STATUS_OF_FAILURE: Record<UpstreamCallError['kind'], UpstreamStatus> = {
  timeout: 'timeout', error: 'error', 'not-found': 'error', rejected: 'rejected', cancelled: 'cancelled'
}

const elapsedSince = (startedAt: number) => Math.round((performance.now() - startedAt) * 10) / 10

/** The client-facing error for a required upstream that produced nothing usable. */
function requiredUpstreamError (name: UpstreamName, userId: string, failure: UpstreamCallError | 'malformed'): Error {
  if (failure === 'malformed') return new RequiredUpstreamFailedError(name)
  switch (failure.kind) {
    case 'not-found': return new UserNotFoundError(userId)
    case 'timeout': return new RequiredUpstreamTimeoutError(name)
    case 'rejected': return new RequiredUpstreamBusyError(name)
    default: return new RequiredUpstreamFailedError(name)
  }
}

function failureReport (outcome: CallOutcome): UpstreamReport {
  const failure = outcome.failure!
  const report: UpstreamReport = { status: STATUS_OF_FAILURE[failure.kind], latencyMs: outcome.latencyMs, fallback: 'omitted' }
  if (failure.httpStatus !== undefined) report.httpStatus = failure.httpStatus
  return report
}

// A last-good body is handed back by the merge thread only when the cached one is missing or this close to expiry:
// moving every valid body back after every merge cost hand-off work for a value that had not changed.
const STALE_REFRESH_SHARE = 0.5

/**
 * Builds one aggregate: fans out to every upstream at once under one deadline, gives up early when a required upstream
 * fails, hands the bodies (with last-good values for the fallbacks) to the merge, and reports what each upstream did.
 */
export function createAggregator (options: AggregatorOptions) {
  const { fetchers, fallbacks, staleCache, merge, deadlineMs, mergeReserveMs, topK, maxBodyElements } = options
  // Decided once per upstream: whether its last good body may ever be served (never for a required one). Only those
  // bodies are cached, and only those are looked up.
  const servesStale = Object.fromEntries(UPSTREAM_NAMES.map((name) => [
    name, !UPSTREAMS[name].required && fallbackSteps(fallbacks[name]).useStale
  ])) as Record<UpstreamName, boolean>
  const requiredNames = UPSTREAM_NAMES.filter((name) => UPSTREAMS[name].required)
  let inFlight = 0

  async function fanOut (userId: string, deadline: Deadline, requestId: string) {
    const calls = UPSTREAM_NAMES.map(async (name): Promise<CallOutcome> => {
      const startedAt = performance.now()
      try {
        const budgetMs = callBudgetMs(deadline, fetchers[name].timeoutMs, mergeReserveMs)
        const signal = deadline.callSignal(Math.max(0, budgetMs))
        const body = await fetchers[name].fetchBody(userId, { signal, budgetMs, requestId })
        return { body, latencyMs: elapsedSince(startedAt) }
      } catch (error) {
        // A required upstream failed: the other calls are of no use any more.
        if (UPSTREAMS[name].required) deadline.abort(new DOMException('a required upstream failed', 'AbortError'))
        const failure = error instanceof UpstreamCallError ? error : new UpstreamCallError(name, 'error', { cause: error })
        return { failure, latencyMs: elapsedSince(startedAt) }
      }
    })
    const settled = await Promise.all(calls)
    const outcomes = {} as Record<UpstreamName, CallOutcome>
    UPSTREAM_NAMES.forEach((name, index) => { outcomes[name] = settled[index]! })
    return outcomes
  }

  /** The merge's input: each upstream's body, and its last good one where that may be needed. */
  function mergeInput (userId: string, bodies: Partial<Record<UpstreamName, Uint8Array>>, staleWanted: (name: UpstreamName) => boolean): MergeInput {
    const sections = {} as Record<UpstreamName, SectionInput>
    const returnBodies: UpstreamName[] = []
    for (const name of UPSTREAM_NAMES) {
      const section: SectionInput = { otherwise: fallbackSteps(fallbacks[name]).otherwise }
      const body = bodies[name]
      if (body) {
        section.fresh = body
        if (servesStale[name] && staleCache.needsRefresh(name, userId, STALE_REFRESH_SHARE)) returnBodies.push(name)
      }
      if (servesStale[name] && staleWanted(name)) section.stale = staleCache.get(name, userId)
      sections[name] = section
    }
    return { userId, topK, sections, returnBodies, maxBodyElements }
  }

  /**
   * Merges, with last-good values only for the calls that failed. Only the merge can tell that a fresh body is
   * malformed; when one is and a last-good value exists, it merges once more with that value, reusing the valid bodies
   * the first merge handed back. The common case copies no cached body.
   */
  async function mergeWithFallbacks (userId: string, outcomes: Record<UpstreamName, CallOutcome>, deadline: Deadline): Promise<MergeResult> {
    const fresh = Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, outcomes[name].body]))
    const first = await merge(mergeInput(userId, fresh, (name) => !outcomes[name].body), { signal: deadline.signal, budgetMs: deadline.remainingMs(), alone: inFlight === 1 })
    const replaceable = first.malformed.filter((name) => servesStale[name] && staleCache.get(name, userId) !== undefined)
    if (replaceable.length === 0) return first
    // A merge that found a malformed body hands every valid one back, for this second merge.
    const kept = first.validFresh
    const second = await merge(mergeInput(userId, kept, (name) => !kept[name]), { signal: deadline.signal, budgetMs: deadline.remainingMs(), alone: inFlight === 1 })
    return { ...second, malformed: first.malformed }
  }

  /**
   * When the merge cannot give an answer before the deadline (its thread died, ran out of memory, or is still running),
   * the required sections are merged here, on the loop — they are small — and every optional one gets its static
   * fallback: the request answers 200 partial instead of wasting the fan-out it already paid for.
   */
  function degradedMerge (userId: string, required: Partial<Record<UpstreamName, Uint8Array>>): MergeResult {
    return mergeSections(mergeInput(userId, required, () => false))
  }

  async function aggregate (userId: string, { signal, requestId, queuedMs = 0 }: { signal: AbortSignal, requestId: string, queuedMs?: number }): Promise<AggregateOutcome> {
    const startedAt = performance.now()
    // The deadline counts from arrival: time spent in the admission queue is part of it.
    const budgetMs = Math.max(0, deadlineMs - queuedMs)
    // Refuse before the fan-out, not after it: five upstream calls whose merge will be refused are pure waste, and
    // under overload that waste is what makes goodput collapse.
    const refused = merge.refusal(budgetMs - mergeReserveMs)
    if (refused) return { ok: false, error: refused, upstreams: null }
    const deadline = startDeadline(budgetMs, signal)
    let outcome: AggregateOutcome | undefined
    let slowestCallMs = 0
    inFlight++
    try {
      const outcomes = await fanOut(userId, deadline, requestId)
      for (const name of UPSTREAM_NAMES) slowestCallMs = Math.max(slowestCallMs, outcomes[name].latencyMs)
      outcome = await mergeAndReport(userId, outcomes, deadline, startedAt)
      return outcome
    } finally {
      inFlight--
      deadline.release()
      if (requestChannel.hasSubscribers) {
        const durationMs = performance.now() - startedAt
        requestChannel.publish({ userId, ok: outcome?.ok === true, durationMs, ownMs: Math.max(0, durationMs - slowestCallMs) } satisfies AggregateRequestMessage)
      }
    }
  }

  async function mergeAndReport (userId: string, outcomes: Record<UpstreamName, CallOutcome>, deadline: Deadline, startedAt: number): Promise<AggregateOutcome> {
    const callReports = {} as UpstreamReports
    for (const name of UPSTREAM_NAMES) {
      const outcome = outcomes[name]
      callReports[name] = outcome.failure ? failureReport(outcome) : { status: 'ok', latencyMs: outcome.latencyMs, fallback: 'none' }
    }

    const failedRequired = requiredNames.find((name) => outcomes[name].failure)
    if (failedRequired) return { ok: false, error: requiredUpstreamError(failedRequired, userId, outcomes[failedRequired].failure!), upstreams: callReports }

    // The required bodies are small and the merge thread takes the originals: a copy stays here for a degraded merge.
    const required = Object.fromEntries(requiredNames.map((name) => [name, outcomes[name].body!.slice()]))
    let merged: MergeResult
    let mergeFailed = false
    try {
      // Past the deadline already, a merge could only be refused: answer with what is here.
      if (deadline.signal.aborted) throw deadline.signal.reason
      merged = await raceDeadline(mergeWithFallbacks(userId, outcomes, deadline), deadline.signal)
    } catch {
      merged = degradedMerge(userId, required)
      mergeFailed = true
    }

    const upstreams = {} as UpstreamReports
    for (const name of UPSTREAM_NAMES) {
      const source = merged.sources[name]
      let status = merged.malformed.includes(name) ? 'malformed' : callReports[name].status
      if (mergeFailed && status === 'ok' && !requiredNames.includes(name)) status = 'merge-failed'
      upstreams[name] = { ...callReports[name], status, fallback: source === 'fresh' ? 'none' : source }
      // Only a body that went through a whole merge is kept as a last good value.
      const valid = merged.validFresh[name]
      if (valid && servesStale[name]) staleCache.set(name, userId, valid)
    }

    const malformedRequired = requiredNames.find((name) => merged.malformed.includes(name))
    if (malformedRequired) return { ok: false, error: requiredUpstreamError(malformedRequired, userId, 'malformed'), upstreams }

    const complete = UPSTREAM_NAMES.every((name) => upstreams[name].status === 'ok')
    const body: AggregateBody = {
      userId,
      ...merged.sections,
      meta: { complete, durationMs: elapsedSince(startedAt), upstreams }
    }
    return { ok: true, body, upstreams }
  }

  return { aggregate }
}

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
