import { Compile } from 'typebox/compile'
import { registry, type BuiltInUpstream } from '../../src/lib/contract/upstreams.js'
import { loadMerger } from '../../src/lib/merge/merge-sections.js'

/** The built-in registry's merge, as a merge thread loads it. */
export const merger = await loadMerger(registry)

/** Each built-in upstream's compiled payload validator, as the merge uses it. */
export const validators = Object.fromEntries(registry.upstreams.map((upstream) => [upstream.name, Compile(upstream.payload)])) as Record<BuiltInUpstream, ReturnType<typeof Compile>>
