import { registry } from '../../src/lib/contract/upstreams.js'
import { loadMerger, type MergeInput, type MergeResult } from '../../src/lib/merge/merge-sections.js'

/** The built-in registry's merge, as the gateway's merge threads run it. */
const merger = await loadMerger(registry)
export const mergeSections = (input: MergeInput): MergeResult => merger.merge(input)
