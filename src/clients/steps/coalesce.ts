import type { CallHandler, CallStep, CallTrace, UpstreamCall } from '../pipeline.js'
import { toUpstreamCallError } from './classify-errors.js'

export interface CoalesceStats {
  /** Callers that joined a call already in flight instead of making their own. */
  joined: number
}

interface Flight {
  readonly promise: Promise<Uint8Array>
  readonly controller: AbortController
  readonly trace: CallTrace
  callers: number
  /** The first caller to be answered gets the body itself; every other caller a copy (a merge may take its buffer). */
  originalTaken: boolean
}

const copyTrace = (from: CallTrace, to: CallTrace) => {
  to.attempts = from.attempts
  if (from.hedge) to.hedge = from.hedge
}

/**
 * Concurrent calls for the same user share one call (singleflight, with per-caller cancellation): a caller that goes
 * away only detaches itself, the shared call is aborted when its last caller has left, and it is forgotten as soon as
 * it settles, so a failure is shared by those waiting and never served to anyone later. The shared call carries the
 * first caller's request id and deadline header, and lives as long as any caller still waits for it.
 */
export function coalesceStep (upstream: string, stats: CoalesceStats): CallStep {
  const flights = new Map<string, Flight>()

  return (next) => (call) => {
    let flight = flights.get(call.userId)
    if (flight) {
      call.trace.coalesced = true
      stats.joined++
    } else {
      flight = takeOff(next, call)
    }
    return join(flight, call)
  }

  function takeOff (next: CallHandler, call: UpstreamCall): Flight {
    const controller = new AbortController()
    const trace: CallTrace = { attempts: 0 }
    const promise = next({ ...call, signal: controller.signal, trace })
    const flight: Flight = { promise, controller, trace, callers: 0, originalTaken: false }
    flights.set(call.userId, flight)
    const land = () => { if (flights.get(call.userId) === flight) flights.delete(call.userId) }
    promise.then(land, land)
    return flight
  }

  function join (flight: Flight, call: UpstreamCall): Promise<Uint8Array> {
    const { signal } = call
    if (signal.aborted) return Promise.reject(toUpstreamCallError(upstream, signal.reason, signal))
    flight.callers++
    return new Promise((resolve, reject) => {
      const leave = () => {
        copyTrace(flight.trace, call.trace)
        if (--flight.callers === 0) {
          if (flights.get(call.userId) === flight) flights.delete(call.userId)
          flight.controller.abort(signal.reason)
        }
        reject(toUpstreamCallError(upstream, signal.reason, signal))
      }
      signal.addEventListener('abort', leave, { once: true })
      flight.promise.then((body) => {
        if (signal.aborted) return
        signal.removeEventListener('abort', leave)
        copyTrace(flight.trace, call.trace)
        if (flight.originalTaken) return resolve(body.slice())
        flight.originalTaken = true
        resolve(body)
      }, (error: unknown) => {
        if (signal.aborted) return
        signal.removeEventListener('abort', leave)
        copyTrace(flight.trace, call.trace)
        reject(error)
      })
    })
  }
}
