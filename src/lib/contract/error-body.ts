import { STATUS_CODES } from 'node:http'

/** The JSON every error response carries, from the central error handler, admission or the HTTP parser alike. */
export interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
  requestId: string
}

/** {@link ErrorBody} as a JSON schema; routes reference it as `ErrorBody#` in their response schemas. */
export const ErrorBodySchema = {
  $id: 'ErrorBody',
  type: 'object',
  required: ['statusCode', 'code', 'error', 'message', 'requestId'],
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string' },
    error: { type: 'string' },
    message: { type: 'string' },
    requestId: { type: 'string' }
  }
} as const

/** The reason phrase of an HTTP status, as the `error` field and the status line carry it. */
export const reasonPhrase = (statusCode: number): string => STATUS_CODES[statusCode] ?? 'Error'

/** The error body for a request. */
export function errorBody (requestId: string, statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: reasonPhrase(statusCode), message, requestId }
}
