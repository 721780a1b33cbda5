import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
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
 * time. The copy sits in a temporary directory beside public/ and a node_modules/ of links to the real packages, so
 * imports resolve as in dist/; only typebox is bundled there (see bundleTypebox).
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
  symlinkSync(join(root, 'public'), join(outdir, 'public'), 'dir')
  mkdirSync(join(outdir, 'node_modules'))
  for (const name of readdirSync(join(root, 'node_modules'))) {
    if (name !== 'typebox') symlinkSync(join(root, 'node_modules', name), join(outdir, 'node_modules', name))
  }
  await bundleTypebox(join(outdir, 'node_modules', 'typebox'))
  provide('compiledRoot', pathToFileURL(`${outdir}/`).href)
  return () => { rmSync(outdir, { recursive: true, force: true }) }
}

/**
 * typebox ships as some 700 small modules, and a merge thread loads most of them: 0.2 s of CPU per thread start, most of
 * what starting one costs. The same code bundled, every entry point of its package in one build (so `typebox` and
 * `typebox/compile` share one copy), loads in a third of that. Packages that import typebox themselves still get theirs.
 */
async function bundleTypebox (destination: string) {
  const { exports } = JSON.parse(readFileSync(join(root, 'node_modules', 'typebox', 'package.json'), 'utf8')) as { exports: Record<string, unknown> }
  const entries = Object.keys(exports).map((subpath) => ({ subpath, out: subpath === '.' ? 'index' : subpath.slice(2) }))
  await build({
    entryPoints: entries.map(({ subpath, out }) => ({ in: join('typebox', subpath), out })),
    absWorkingDir: root,
    outdir: destination,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'warning'
  })
  const bundledExports = Object.fromEntries(entries.map(({ subpath, out }) => [subpath, `./${out}.js`]))
  writeFileSync(join(destination, 'package.json'), JSON.stringify({ name: 'typebox', type: 'module', exports: bundledExports }))
}
