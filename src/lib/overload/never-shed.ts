/**
 * Route config for routes that must answer even under pressure (liveness, readiness, metrics, dashboard):
 * under-pressure's checks let them through.
 */
export const neverShed = { pressureHandler: () => undefined }
