import { isDeepStrictEqual } from 'node:util'
import { bench, describe } from 'vitest'
import { BODY_GENERATORS } from '../../../mock-services/data.js'
import type { InventoryPayload, OrdersPayload, ProfilePayload, RecommendationsPayload } from '../../../src/lib/contract/payloads.js'
import { UPSTREAM_NAMES } from '../../../src/lib/contract/upstreams.js'
import { parseJson, type MergeInput } from '../../../src/lib/merge/merge-sections.js'
import { rankRecommendations, type RankingInput } from '../../../src/lib/merge/ranking.js'
import { summariseOrders } from '../../../src/lib/merge/sections/orders.js'
import { referenceMergeSections } from '../../fixtures/reference-merge-sections.js'
import { rankRecommendations as referenceRankRecommendations } from '../../fixtures/reference-ranking.js'
import { cpuClock } from '../../helpers/bench-clocks.js'
import { merger } from '../../helpers/merge.js'

// CPU per call of the merge kernel, before (the verbatim copies in test/fixtures/reference-*) and now (src/lib/merge):
//   ranking  rankRecommendations alone, on payloads already parsed and read as the merge reads them
//   merge    the whole merge of five bodies: scan, parse, validate, summarise and rank
// Each call takes the next of a set of users, so every shape the generators make is timed. `npm run bench:unit`, or
// `npx vitest bench --run test/lib/merge/merge-kernel.bench.ts`.

const SCALES = [1, 3, 10]
const TOP_K = 10
const OPTIONS = { now: cpuClock, time: 1000 }

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

function mergeInputFor (userId: string, scale: number): MergeInput {
  const sections = Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, { fresh: encode(BODY_GENERATORS[name]!(userId, scale)), otherwise: 'default' }]))
  return { userId, topK: TOP_K, sections: sections as MergeInput['sections'] }
}

/** The ranking input the merge builds from these bodies. */
function rankingInputFor ({ sections, topK }: MergeInput): RankingInput {
  const orders = parseJson(sections.orders!.fresh!) as OrdersPayload
  const inventory = parseJson(sections.inventory!.fresh!) as InventoryPayload
  return {
    candidates: (parseJson(sections.recommendations!.fresh!) as RecommendationsPayload).candidates,
    orders: orders.orders,
    stock: new Map(inventory.items.map((item) => [item.productId, item])),
    categoryShare: new Map(summariseOrders(orders).spendByCategory.map(({ category, share }) => [category, share])),
    favouriteCategories: (parseJson(sections.profile!.fresh!) as ProfilePayload).preferences.favouriteCategories,
    topK
  }
}

/** A benchmark body that runs `run` on the next input each call. */
function inTurn<Input> (inputs: Input[], run: (input: Input) => unknown): () => void {
  let next = 0
  return () => {
    run(inputs[next]!)
    next = (next + 1) % inputs.length
  }
}

for (const scale of SCALES) {
  // Roughly the same number of candidates scored at every scale.
  const users = Math.max(8, Math.round(120 / scale))
  const mergeInputs = Array.from({ length: users }, (_, index) => mergeInputFor(`bench-user-${index}`, scale))
  const rankingInputs = mergeInputs.map(rankingInputFor)
  // Timing two different answers would be meaningless: the sections, malformed bodies and work counted must agree
  // first (test/lib/merge/ranking-equivalence.test.ts compares the rest).
  const outcome = ({ sections, malformed, work }: Pick<ReturnType<typeof referenceMergeSections>, 'sections' | 'malformed' | 'work'>) => ({ sections, malformed, work })
  for (const [index, input] of mergeInputs.entries()) {
    if (!isDeepStrictEqual(outcome(merger.merge(input)), outcome(referenceMergeSections(input)))) {
      throw new Error(`the merge differs from the reference for bench-user-${index} at scale ${scale}`)
    }
    if (!isDeepStrictEqual(rankRecommendations(rankingInputs[index]!), referenceRankRecommendations(rankingInputs[index]!))) {
      throw new Error(`the ranking differs from the reference for bench-user-${index} at scale ${scale}`)
    }
  }

  describe(`ranking, payload scale ${scale}: CPU ms per ranking`, () => {
    bench('before (test/fixtures/reference-ranking.ts)', inTurn(rankingInputs, referenceRankRecommendations), OPTIONS)
    bench('now (src/lib/merge/ranking.ts)', inTurn(rankingInputs, rankRecommendations), OPTIONS)
  })

  describe(`whole merge, payload scale ${scale}: CPU ms per merge`, () => {
    bench('before (test/fixtures/reference-merge-sections.ts)', inTurn(mergeInputs, referenceMergeSections), OPTIONS)
    bench('now (the registry\'s merge, as a merge thread loads it)', inTurn(mergeInputs, (input) => merger.merge(input)), OPTIONS)
  })
}
