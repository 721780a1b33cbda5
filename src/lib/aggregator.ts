import { callBudgetMs, startDeadline, type Deadline } from './deadline.js'
import { linkedSignal } from './linked-signal.js'
import {
  RequiredUpstreamBusyError, RequiredUpstreamFailedError, RequiredUpstreamTimeoutError, UpstreamCallError, UserNotFoundError
} from './errors.js'
import { fallbackSteps, type FallbackPolicy } from './fallback-policy.js'
import type { AggregateSections, MergeInput, MergeResult, SectionInput } from './merge/merge-sections.js'
import type { StaleCache } from './stale-cache.js'
import { UPSTREAM_NAMES, UPSTREAMS, type UpstreamName } from './upstreams.js'

/** What happened to one upstream in one request, as the response's `meta` reports it. */
export type UpstreamStatus = 'ok' | 'timeout' | 'error' | 'rejected' | 'malformed' | 'cancelled'
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
  (input: MergeInput, options: { signal: AbortSignal, budgetMs: number }): Promise<MergeResult>
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
}

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

/**
 * Builds one aggregate: fans out to every upstream at once under one deadline, gives up early when a required upstream
 * fails, hands the bodies (with last-good values for the fallbacks) to the merge, and reports what each upstream did.
 */
export function createAggregator (options: AggregatorOptions) {
  const { fetchers, fallbacks, staleCache, merge, deadlineMs, mergeReserveMs, topK } = options
  // Decided once per upstream: whether its last good body may ever be served (never for a required one). Only those
  // bodies are cached, and only those are looked up.
  const servesStale = Object.fromEntries(UPSTREAM_NAMES.map((name) => [
    name, !UPSTREAMS[name].required && fallbackSteps(fallbacks[name]).useStale
  ])) as Record<UpstreamName, boolean>

  async function fanOut (userId: string, signal: AbortSignal, requestId: string) {
    const deadline = startDeadline(deadlineMs, signal)
    // Aborted when a required upstream fails: the other calls are of no use any more.
    const giveUp = new AbortController()
    const { signal: callSignal, release } = linkedSignal([deadline.signal, giveUp.signal])

    const calls = UPSTREAM_NAMES.map(async (name): Promise<[UpstreamName, CallOutcome]> => {
      const startedAt = performance.now()
      try {
        const budgetMs = callBudgetMs(deadline, fetchers[name].timeoutMs, mergeReserveMs)
        const body = await fetchers[name].fetchBody(userId, { signal: callSignal, budgetMs, requestId })
        return [name, { body, latencyMs: elapsedSince(startedAt) }]
      } catch (error) {
        if (UPSTREAMS[name].required) giveUp.abort()
        const failure = error instanceof UpstreamCallError ? error : new UpstreamCallError(name, 'error', { cause: error })
        return [name, { failure, latencyMs: elapsedSince(startedAt) }]
      }
    })
    const outcomes = Object.fromEntries(await Promise.all(calls)) as Record<UpstreamName, CallOutcome>
    release()
    return { deadline, outcomes }
  }

  /** The merge's input: each upstream's body, and its last good one where that may be needed. */
  function mergeInput (userId: string, bodies: Partial<Record<UpstreamName, Uint8Array>>, staleWanted: (name: UpstreamName) => boolean): MergeInput {
    const sections = {} as Record<UpstreamName, SectionInput>
    for (const name of UPSTREAM_NAMES) {
      const section: SectionInput = { otherwise: fallbackSteps(fallbacks[name]).otherwise }
      const body = bodies[name]
      if (body) section.fresh = body
      if (servesStale[name] && staleWanted(name)) section.stale = staleCache.get(name, userId)
      sections[name] = section
    }
    return { userId, topK, sections }
  }

  /**
   * Merges, with last-good values only for the calls that failed. Only the merge can tell that a fresh body is
   * malformed; when one is and a last-good value exists, it merges once more with that value, reusing the valid bodies
   * the first merge handed back. The common case copies no cached body.
   */
  async function mergeWithFallbacks (userId: string, outcomes: Record<UpstreamName, CallOutcome>, deadline: Deadline): Promise<MergeResult> {
    const fresh = Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, outcomes[name].body]))
    const first = await merge(mergeInput(userId, fresh, (name) => !outcomes[name].body), { signal: deadline.signal, budgetMs: deadline.remainingMs() })
    const replaceable = first.malformed.filter((name) => servesStale[name] && staleCache.get(name, userId) !== undefined)
    if (replaceable.length === 0) return first
    const second = await merge(mergeInput(userId, first.validFresh, (name) => !first.validFresh[name]), { signal: deadline.signal, budgetMs: deadline.remainingMs() })
    return { ...second, malformed: first.malformed }
  }

  async function aggregate (userId: string, { signal, requestId }: { signal: AbortSignal, requestId: string }): Promise<AggregateOutcome> {
    const startedAt = performance.now()
    // Refuse before the fan-out, not after it: five upstream calls whose merge will be refused are pure waste, and
    // under overload that waste is what makes goodput collapse.
    const refused = merge.refusal(deadlineMs - mergeReserveMs)
    if (refused) return { ok: false, error: refused, upstreams: null }
    const { deadline, outcomes } = await fanOut(userId, signal, requestId)
    try {
      return await mergeAndReport(userId, outcomes, deadline, startedAt)
    } finally {
      deadline.release()
    }
  }

  async function mergeAndReport (userId: string, outcomes: Record<UpstreamName, CallOutcome>, deadline: Deadline, startedAt: number): Promise<AggregateOutcome> {
    const callReports = {} as UpstreamReports
    for (const name of UPSTREAM_NAMES) {
      const outcome = outcomes[name]
      callReports[name] = outcome.failure ? failureReport(outcome) : { status: 'ok', latencyMs: outcome.latencyMs, fallback: 'none' }
    }

    const failedRequired = UPSTREAM_NAMES.find((name) => UPSTREAMS[name].required && outcomes[name].failure)
    if (failedRequired) return { ok: false, error: requiredUpstreamError(failedRequired, userId, outcomes[failedRequired].failure!), upstreams: callReports }

    let merged: MergeResult
    try {
      merged = await mergeWithFallbacks(userId, outcomes, deadline)
    } catch (error) {
      return { ok: false, error: error as Error, upstreams: callReports }
    }

    const upstreams = {} as UpstreamReports
    for (const name of UPSTREAM_NAMES) {
      const source = merged.sources[name]
      const status = merged.malformed.includes(name) ? 'malformed' : callReports[name].status
      upstreams[name] = { ...callReports[name], status, fallback: source === 'fresh' ? 'none' : source }
      const valid = merged.validFresh[name]
      if (valid && servesStale[name]) staleCache.set(name, userId, valid)
    }

    const malformedRequired = UPSTREAM_NAMES.find((name) => UPSTREAMS[name].required && merged.malformed.includes(name))
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

export type Aggregator = ReturnType<typeof createAggregator>
