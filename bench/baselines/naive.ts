import { allAtOnce, startBaseline } from './baseline-server.js'

// Naive concurrent: Promise.all over the five calls. As fast as the slowest upstream, and exactly as slow: no deadline,
// no timeout, no limit on calls in flight.
startBaseline(allAtOnce)
