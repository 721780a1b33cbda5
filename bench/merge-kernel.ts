import { isDeepStrictEqual } from 'node:util'
import { inventoryFor, loyaltyFor, ordersFor, profileFor, recommendationsFor } from '../mock-services/data.js'
import { parseJson, type MergeInput } from '../src/lib/merge/merge-sections.js'
import { mergeSections } from './lib/merge.js'
import { summariseOrders } from '../src/lib/merge/sections/orders.js'
import type { InventoryPayload, OrdersPayload, ProfilePayload, RecommendationsPayload } from '../src/lib/contract/payloads.js'
import { rankRecommendations, type RankingInput } from '../src/lib/merge/ranking.js'
import { UPSTREAM_NAMES, type UpstreamName } from '../src/lib/contract/upstreams.js'
import { referenceMergeSections } from '../test/fixtures/reference-merge-sections.js'
import { rankRecommendations as referenceRankRecommendations } from '../test/fixtures/reference-ranking.js'
import { formatSpread, ratio, spread } from './lib/stats.js'

// CPU cost of the merge kernel, before (test/fixtures/reference-*) and after (src/lib/merge/*), in one process:
//   ranking  rankRecommendations alone, on payloads already parsed and read as the merge does
//   merge    the whole mergeSections: parse, read, summarise and rank the five bodies
// Rounds alternate reference and new as ABBA so drift (thermal, other tenants of the shared machine, JIT tiers) hits
// both alike; each round runs every prepared user once and reports microseconds per merge. Run: npx tsx bench/merge-kernel.ts

const SCALES = [1, 3, 10]
const TOP_K = 10
// Quadruples of rounds (reference, new, new, reference) measured after the warm-up ones.
const QUADRUPLES = Number(process.env.MERGE_KERNEL_QUADRUPLES ?? 6)
const WARM_UP_QUADRUPLES = 2

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

function mergeInputFor (userId: string, scale: number): MergeInput {
  const bodies: Record<UpstreamName, Uint8Array> = {
    profile: encode(profileFor(userId)),
    orders: encode(ordersFor(userId, scale)),
    recommendations: encode(recommendationsFor(userId, scale)),
    inventory: encode(inventoryFor(userId, scale)),
    loyalty: encode(loyaltyFor(userId, scale))
  }
  const sections = Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, { fresh: bodies[name], otherwise: 'default' }]))
  return { userId, topK: TOP_K, sections: sections as MergeInput['sections'] }
}

/** The ranking input mergeSections would build from these bodies. */
function rankingInputFor (input: MergeInput): RankingInput {
  const { sections } = input
  const orders = parseJson(sections.orders!.fresh!) as OrdersPayload
  const inventory = parseJson(sections.inventory!.fresh!) as InventoryPayload
  return {
    candidates: (parseJson(sections.recommendations!.fresh!) as RecommendationsPayload).candidates,
    orders: orders.orders,
    stock: new Map(inventory.items.map((item) => [item.productId, item])),
    categoryShare: new Map(summariseOrders(orders).spendByCategory.map(({ category, share }) => [category, share])),
    favouriteCategories: (parseJson(sections.profile!.fresh!) as ProfilePayload).preferences.favouriteCategories,
    topK: input.topK
  }
}

interface Workload<Input> {
  name: string
  inputs: Input[]
  reference: (input: Input) => unknown
  current: (input: Input) => unknown
}

/**
 * CPU microseconds (user + system, this process) per call of `run` over every input, once. CPU rather than wall time:
 * on a shared, busy machine wall time mostly measures the other tenants.
 */
function round<Input> (inputs: Input[], run: (input: Input) => unknown): number {
  let sink = 0
  const before = process.cpuUsage()
  for (const input of inputs) if (run(input) !== undefined) sink++
  const { user, system } = process.cpuUsage(before)
  if (sink < 0) console.log(sink)
  return (user + system) / inputs.length
}

function measure<Input> ({ inputs, reference, current }: Workload<Input>) {
  const referenceRounds: number[] = []
  const currentRounds: number[] = []
  for (let quadruple = 0; quadruple < WARM_UP_QUADRUPLES + QUADRUPLES; quadruple++) {
    const keep = quadruple >= WARM_UP_QUADRUPLES
    const a1 = round(inputs, reference)
    const b1 = round(inputs, current)
    const b2 = round(inputs, current)
    const a2 = round(inputs, reference)
    if (!keep) continue
    referenceRounds.push(a1, a2)
    currentRounds.push(b1, b2)
  }
  return { reference: spread(referenceRounds), current: spread(currentRounds) }
}

function usersFor (scale: number): number {
  // Roughly the same wall time per round at every scale.
  return Math.max(8, Math.round(120 / scale))
}

for (const scale of SCALES) {
  const mergeInputs = Array.from({ length: usersFor(scale) }, (_, index) => mergeInputFor(`bench-user-${index}`, scale))
  const rankingInputs = mergeInputs.map(rankingInputFor)
  // A benchmark of two different answers would be meaningless: check they agree before timing them.
  for (const [index, input] of mergeInputs.entries()) {
    // Sources aside: the reference says `fresh` where the merge now says `none`.
    if (!isDeepStrictEqual({ ...mergeSections(input), sources: null }, { ...referenceMergeSections(input), sources: null })) throw new Error(`merge differs for user ${index} at scale ${scale}`)
    if (!isDeepStrictEqual(rankRecommendations(rankingInputs[index]!), referenceRankRecommendations(rankingInputs[index]!))) {
      throw new Error(`ranking differs for user ${index} at scale ${scale}`)
    }
  }
  const workloads: Array<Workload<MergeInput> | Workload<RankingInput>> = [
    { name: 'ranking', inputs: rankingInputs, reference: referenceRankRecommendations, current: rankRecommendations },
    { name: 'merge', inputs: mergeInputs, reference: referenceMergeSections, current: mergeSections }
  ]
  for (const workload of workloads) {
    const result = measure(workload as Workload<unknown>)
    const line = `scale ${String(scale).padStart(2)}  ${workload.name.padEnd(8)} reference ${formatSpread(result.reference, 1, ' µs')}  ` +
      `new ${formatSpread(result.current, 1, ' µs')}  new/reference ${ratio(result.current.median, result.reference.median)}`
    console.log(line)
  }
}
console.log(`\n${QUADRUPLES * 2} measured rounds per side (ABBA, after ${WARM_UP_QUADRUPLES * 4} warm-up rounds); median (min–max) CPU µs per merge`)
