/**
 * The fault and latency controls every mock upstream exposes at `/__control`.
 */
export const MOCK_MODES = ['normal', 'hang', 'error', 'malformed', 'slow-body', 'reset', 'nested', 'overflow', 'header-flood'] as const
export type MockMode = typeof MOCK_MODES[number]

export interface MockSettings {
  /** Base delay before answering. */
  latencyMs: number
  /** Up to this much extra delay, uniformly random. */
  jitterMs: number
  /**
   * Probability (0..1) that a request waits tailLatencyMs instead of latencyMs (jitter still applies): a long tail, for
   * every user. Drawn from a seeded sequence, so the same requests in the same order get the same tail.
   */
  tailRate: number
  /** Base delay of a tail request, in whole milliseconds. */
  tailLatencyMs: number
  /** Probability (0..1) of answering failureStatus instead. */
  failureRate: number
  /** The status of a failure drawn by failureRate (and of `error` mode): 500, or a transient 502, 503 or 504. */
  failureStatus: number
  /** Multiplies the list sizes of every body. */
  payloadScale: number
  /** Size of the body in `nested` mode: valid JSON that is expensive to parse. */
  hostileBytes: number
  mode: MockMode
  /**
   * The fault mode and failureRate apply only to users whose id starts with this ('' = every user); the others get
   * normal answers, with the same latency.
   */
  modeUserPrefix: string
}

// A little under 8 MiB, so a gateway whose body limit is exactly 8 MiB still reads (and has to parse) all of it.
const DEFAULT_HOSTILE_BYTES = 8 * 1024 * 1024 - 1024

export const BUILT_IN_DEFAULTS: MockSettings = Object.freeze({
  latencyMs: 0, jitterMs: 0, tailRate: 0, tailLatencyMs: 0, failureRate: 0, failureStatus: 500, payloadScale: 1, hostileBytes: DEFAULT_HOSTILE_BYTES, mode: 'normal', modeUserPrefix: ''
})

type NumericSetting = { [Key in keyof MockSettings]: MockSettings[Key] extends number ? Key : never }[keyof MockSettings]

// Every numeric setting has bounds (the type says so). `integer`: whole numbers only.
const LIMITS: Record<NumericSetting, { min: number, max: number, integer?: boolean }> = {
  latencyMs: { min: 0, max: 600_000 },
  jitterMs: { min: 0, max: 600_000 },
  tailRate: { min: 0, max: 1 },
  tailLatencyMs: { min: 0, max: 600_000, integer: true },
  failureRate: { min: 0, max: 1 },
  failureStatus: { min: 500, max: 504, integer: true },
  payloadScale: { min: 0.01, max: 100 },
  hostileBytes: { min: 1024, max: 64 * 1024 * 1024 }
}
const isNumericSetting = (key: string): key is NumericSetting => Object.hasOwn(LIMITS, key)

const USER_PREFIX = /^[A-Za-z0-9_-]{0,64}$/

/**
 * Applies a partial update to settings. Returns the new settings, or the list of problems if any field is unknown or
 * out of range (in which case nothing changes).
 */
export function updateSettings (current: MockSettings, update: unknown): { settings: MockSettings } | { problems: string[] } {
  if (typeof update !== 'object' || update === null || Array.isArray(update)) return { problems: ['body must be a JSON object'] }
  const next: MockSettings = { ...current }
  const problems: string[] = []
  for (const [key, value] of Object.entries(update)) {
    if (key === 'mode') {
      if (MOCK_MODES.includes(value as MockMode)) next.mode = value as MockMode
      else problems.push(`mode must be one of ${MOCK_MODES.join(', ')}`)
    } else if (key === 'modeUserPrefix') {
      if (typeof value === 'string' && USER_PREFIX.test(value)) next.modeUserPrefix = value
      else problems.push('modeUserPrefix must be a string of at most 64 characters from A-Z, a-z, 0-9, _ and -')
    } else if (isNumericSetting(key)) {
      const { min, max, integer = false } = LIMITS[key]
      const valid = typeof value === 'number' && (integer ? Number.isInteger(value) : Number.isFinite(value)) && value >= min && value <= max
      if (valid) next[key] = value
      else problems.push(`${key} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`)
    } else {
      problems.push(`unknown setting ${JSON.stringify(key)}`)
    }
  }
  return problems.length > 0 ? { problems } : { settings: next }
}

/** Defaults for a mock process, from `MOCK_*` environment variables, validated like a PUT. */
export function settingsFromEnvironment (env: NodeJS.ProcessEnv, base: MockSettings = BUILT_IN_DEFAULTS): MockSettings {
  const update: Record<string, unknown> = {}
  const numeric = {
    MOCK_LATENCY_MS: 'latencyMs',
    MOCK_JITTER_MS: 'jitterMs',
    MOCK_TAIL_RATE: 'tailRate',
    MOCK_TAIL_LATENCY_MS: 'tailLatencyMs',
    MOCK_FAILURE_RATE: 'failureRate',
    MOCK_FAILURE_STATUS: 'failureStatus',
    MOCK_PAYLOAD_SCALE: 'payloadScale',
    MOCK_HOSTILE_BYTES: 'hostileBytes'
  }
  for (const [variable, key] of Object.entries(numeric)) {
    if (env[variable] !== undefined && env[variable] !== '') update[key] = Number(env[variable])
  }
  if (env.MOCK_MODE) update.mode = env.MOCK_MODE
  if (env.MOCK_MODE_USER_PREFIX !== undefined) update.modeUserPrefix = env.MOCK_MODE_USER_PREFIX
  const result = updateSettings(base, update)
  if ('problems' in result) throw new Error(`Invalid mock settings: ${result.problems.join('; ')} (from MOCK_* variables)`)
  return result.settings
}
