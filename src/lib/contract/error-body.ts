import { STATUS_CODES } from 'node:http'
import Type, { type Static } from 'typebox'

/** The JSON every error response carries, from the central error handler, admission or the HTTP parser alike. */
export const ErrorBody = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String({ description: 'Stable, machine-readable: AGG_ERR_…' }),
  error: Type.String(),
  message: Type.String(),
  requestId: Type.String()
}, { $id: 'ErrorBody' })
export type ErrorBody = Static<typeof ErrorBody>

/** The reason phrase of an HTTP status, as the `error` field and the status line carry it. */
export const reasonPhrase = (statusCode: number): string => STATUS_CODES[statusCode] ?? 'Error'

/** The error body for a request. */
export function errorBody (requestId: string, statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: reasonPhrase(statusCode), message, requestId }
}
