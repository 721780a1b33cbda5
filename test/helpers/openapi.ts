import { Validator } from '@seriousme/openapi-schema-validator'
import { Ajv2020 } from 'ajv/dist/2020.js'

type Document = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>> }

/**
 * Checks `document` is a valid OpenAPI document, and returns a function that validates a real response against the
 * response schema the document declares for that path, method and status (an exact status, else its `4XX`/`5XX`).
 */
export async function openApiValidator (document: unknown) {
  const check = await new Validator().validate(document as Parameters<Validator['validate']>[0])
  if (!check.valid) throw new Error(`not a valid OpenAPI document: ${JSON.stringify(check.errors).slice(0, 1000)}`)
  const ajv = new Ajv2020({ strict: false, allErrors: true })
  ajv.addSchema(document as object, 'openapi')
  const escape = (segment: string) => segment.replaceAll('~', '~0').replaceAll('/', '~1')
  return (path: string, method: string, statusCode: number, body: unknown): string[] => {
    const responses = (document as Document).paths[path]?.[method]?.responses
    if (!responses) return [`the document has no ${method.toUpperCase()} ${path}`]
    const key = String(statusCode) in responses ? String(statusCode) : `${String(statusCode)[0]}XX`
    if (!responses[key]?.content?.['application/json']) return [`the document declares no JSON body for ${method.toUpperCase()} ${path} ${statusCode}`]
    const validate = ajv.compile({ $ref: `openapi#/paths/${escape(path)}/${method}/responses/${key}/content/application~1json/schema` })
    return validate(body) ? [] : (validate.errors ?? []).map((error) => `${error.instancePath || '/'} ${error.message ?? ''}`)
  }
}
