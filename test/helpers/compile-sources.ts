import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build } from 'esbuild'
import type { TestProject } from 'vitest/node'

declare module 'vitest' {
  export interface ProvidedContext {
    /** file: URL of the directory that holds this run's compiled copy of src/ and test/fixtures/ (see below). */
    compiledRoot: string
  }
}

const root = fileURLToPath(new URL('../..', import.meta.url))
const COMPILED = ['src', 'test/fixtures']

/**
 * Vitest global setup: compiles src/ and test/fixtures/ to JavaScript once per run, file for file, the way `npm run build`
 * does, for the code that runs outside vitest: merge threads, piscina workers and server processes. Run from source,
 * each of those loads tsx, which costs about a second per thread (two on a busy machine), much of the suite's
 * time. The copy sits in a temporary directory beside links to node_modules/ and public/, so imports resolve as in dist/.
 */
export default async function compileSources ({ provide }: TestProject) {
  const outdir = mkdtempSync(join(tmpdir(), 'aggregator-compiled-'))
  const entryPoints = COMPILED.flatMap((folder) => readdirSync(join(root, folder), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))
    .map((file) => join(root, folder, file)))
  await build({
    entryPoints,
    outdir,
    outbase: root,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    tsconfig: join(root, 'tsconfig.json'),
    logLevel: 'warning'
  })
  writeFileSync(join(outdir, 'package.json'), '{ "type": "module" }\n')
  symlinkSync(join(root, 'node_modules'), join(outdir, 'node_modules'), 'dir')
  symlinkSync(join(root, 'public'), join(outdir, 'public'), 'dir')
  provide('compiledRoot', pathToFileURL(`${outdir}/`).href)
  return () => { rmSync(outdir, { recursive: true, force: true }) }
}
