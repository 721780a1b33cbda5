import { inject } from 'vitest'

const repositoryRoot = new URL('../../', import.meta.url).href

/**
 * Where this run's compiled copy of a source module is (test/helpers/compile-sources.ts): `…/src/server.ts` →
 * `<compiled>/src/server.js`. For code that runs outside vitest (threads, processes), which would need tsx for the source.
 */
export function compiled (source: string | URL): URL {
  const href = String(source)
  if (!href.startsWith(repositoryRoot)) throw new Error(`${href} is not in this repository (${repositoryRoot})`)
  return new URL(href.slice(repositoryRoot.length).replace(/\.ts$/, '.js'), inject('compiledRoot'))
}
