import { productEmbedding } from '../src/lib/contract/product-embedding.js'
import { hashString, seededRandom } from '../src/lib/contract/seeded-random.js'
import type {
  InventoryPayload, LoyaltyPayload, Order, OrdersPayload, ProfilePayload, RecommendationsPayload
} from '../src/lib/contract/payloads.js'

// Deterministic data for the mock upstreams: everything is derived from the user id (and the payload scale), so the
// same request always gets the same body and the recommendations and inventory services agree on which products exist.

export const CATEGORIES = ['books', 'electronics', 'garden', 'grocery', 'toys', 'fashion', 'beauty', 'sports', 'home', 'music', 'outdoors', 'pets']
const REGIONS = ['eu-west', 'eu-central', 'us-east', 'us-west', 'ap-south']
const WAREHOUSES = ['north', 'south', 'east', 'west']
const TIERS = [{ name: 'bronze', threshold: 0 }, { name: 'silver', threshold: 1000 }, { name: 'gold', threshold: 5000 }, { name: 'platinum', threshold: 20000 }]
const FIRST_NAMES = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Margaret', 'Ken', 'Radia', 'Linus', 'Frances', 'Tim']
const LAST_NAMES = ['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Hamilton', 'Thompson', 'Perlman', 'Torvalds', 'Allen', 'Berners-Lee']
const ADJECTIVES = ['Compact', 'Classic', 'Deluxe', 'Eco', 'Smart', 'Vintage', 'Rugged', 'Portable', 'Premium', 'Everyday']
const NOUNS = ['Kit', 'Set', 'Lamp', 'Guide', 'Bundle', 'Speaker', 'Bottle', 'Jacket', 'Planter', 'Puzzle', 'Tracker', 'Blanket']
// Products per category; a product id encodes its category, so every service derives the same one.
const PRODUCTS_PER_CATEGORY = 2000
// All dates are relative to a fixed day so bodies do not change from one day to the next.
const REFERENCE_TIME = Date.parse('2026-01-01T00:00:00Z')
const DAY_MS = 86_400_000

const BASE_COUNTS = { orders: 32, candidates: 200, extraStock: 40, loyaltyEvents: 20 }

type Random = () => number

const randomFor = (userId: string, stream: string): Random => seededRandom(hashString(`${stream}:${userId}`))
const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)]!
const integer = (random: Random, min: number, max: number) => min + Math.floor(random() * (max - min + 1))
const money = (value: number) => Math.round(value * 100) / 100
const scaled = (count: number, scale: number) => Math.max(1, Math.round(count * scale))

function productId (categoryIndex: number, ordinal: number): string {
  return `p-${ordinal * CATEGORIES.length + categoryIndex}`
}

function categoryOf (id: string): string {
  return CATEGORIES[Number(id.slice(2)) % CATEGORIES.length]!
}

function priceOf (id: string): number {
  return money(5 + seededRandom(hashString(`price:${id}`))() * 295)
}

function favouriteCategories (userId: string): number[] {
  const random = randomFor(userId, 'favourites')
  const chosen = new Set<number>()
  while (chosen.size < 3) chosen.add(integer(random, 0, CATEGORIES.length - 1))
  return [...chosen]
}

/** A product the user is likely to care about: half the time from a favourite category. */
function productFor (userId: string, random: Random, favourites = favouriteCategories(userId)): string {
  const categoryIndex = random() < 0.5 ? pick(random, favourites) : integer(random, 0, CATEGORIES.length - 1)
  return productId(categoryIndex, integer(random, 0, PRODUCTS_PER_CATEGORY - 1))
}

export function regionOf (userId: string): string {
  return pick(randomFor(userId, 'region'), REGIONS)
}

export function profileFor (userId: string): ProfilePayload {
  const random = randomFor(userId, 'profile')
  const first = pick(random, FIRST_NAMES)
  const last = pick(random, LAST_NAMES)
  return {
    id: userId,
    name: `${first} ${last}`,
    email: `${first}.${last}.${hashString(userId) % 10_000}@example.com`.toLowerCase(),
    tier: pick(random, TIERS).name,
    region: regionOf(userId),
    createdAt: new Date(REFERENCE_TIME - integer(random, 30, 3000) * DAY_MS).toISOString(),
    preferences: {
      currency: pick(random, ['EUR', 'USD', 'GBP']),
      language: pick(random, ['en', 'de', 'fr', 'es']),
      marketingOptIn: random() < 0.4,
      favouriteCategories: favouriteCategories(userId).map((index) => CATEGORIES[index]!)
    }
  }
}

export function ordersFor (userId: string, scale: number): OrdersPayload {
  const random = randomFor(userId, 'orders')
  const orders: Order[] = []
  for (let index = 0; index < scaled(BASE_COUNTS.orders, scale); index++) {
    const items = Array.from({ length: integer(random, 1, 6) }, () => {
      const id = productFor(userId, random)
      return { productId: id, category: categoryOf(id), unitPrice: priceOf(id), quantity: integer(random, 1, 4) }
    })
    orders.push({
      id: `o-${hashString(userId) % 100_000}-${index}`,
      placedAt: new Date(REFERENCE_TIME - integer(random, 0, 730) * DAY_MS - integer(random, 0, DAY_MS)).toISOString(),
      status: random() < 0.05 ? 'cancelled' : random() < 0.1 ? 'shipped' : 'delivered',
      items,
      total: money(items.reduce((sum, item) => sum + item.unitPrice * item.quantity, 0))
    })
  }
  return { userId, orders }
}

/** The candidate product ids for a user; inventory stocks exactly these (plus others). */
function candidateIds (userId: string, scale: number): string[] {
  const random = randomFor(userId, 'candidates')
  const ids = new Set<string>()
  const wanted = scaled(BASE_COUNTS.candidates, scale)
  const favourites = favouriteCategories(userId)
  while (ids.size < wanted) ids.add(productFor(userId, random, favourites))
  return [...ids]
}

/**
 * The service's own view of a product: its embedding plus some noise of its own, in whole ten-thousandths (the body's
 * precision). The same for every user, so its text is made once per product (the catalogue is 24,000 products).
 */
function productFeatures (id: string): number[] {
  const random = seededRandom(hashString(`features:${id}`))
  return Array.from(productEmbedding(id), (value) => Math.round((value + (random() - 0.5) * 0.1) * 10_000))
}

/** The user's own part of each recommended candidate: the product, the title it is shown with, its popularity. */
function userCandidates (userId: string, scale: number) {
  const random = randomFor(userId, 'recommendations')
  return candidateIds(userId, scale).map((id) => ({
    productId: id,
    title: `${pick(random, ADJECTIVES)} ${categoryOf(id)} ${pick(random, NOUNS)}`,
    popularity: Math.round(random() * 1000) / 1000
  }))
}

export function recommendationsFor (userId: string, scale: number): RecommendationsPayload {
  return {
    userId,
    candidates: userCandidates(userId, scale).map(({ productId, title, popularity }) => ({
      productId,
      title,
      category: categoryOf(productId),
      price: priceOf(productId),
      popularity,
      features: productFeatures(productId).map((tenThousandths) => tenThousandths / 10_000)
    }))
  }
}

// Each product's `"category":…,"price":…` and `"features":[…]` texts, as JSON.stringify writes them; the whole
// catalogue fits.
const productTexts = new Map<string, { head: string, features: string }>()
function productText (id: string) {
  let text = productTexts.get(id)
  if (text === undefined) {
    const head = JSON.stringify({ category: categoryOf(id), price: priceOf(id) }).slice(1, -1)
    const features = JSON.stringify({ features: productFeatures(id).map((tenThousandths) => tenThousandths / 10_000) }).slice(1, -1)
    productTexts.set(id, text = { head, features })
  }
  return text
}

/** Makes every product's texts now (about a quarter of a second), so the first requests of a fresh recommendations mock are not slower. */
export function prepareProductTexts (): void {
  for (let ordinal = 0; ordinal < PRODUCTS_PER_CATEGORY; ordinal++) {
    for (let category = 0; category < CATEGORIES.length; category++) productText(productId(category, ordinal))
  }
}

/**
 * `JSON.stringify(recommendationsFor(userId, scale))`, byte for byte, in a fraction of the time: generating and
 * formatting 6,400 features per body was most of what the recommendations mock spent per request, enough to make it
 * the bottleneck of a batch (it serves 500 requests a second there).
 */
export function recommendationsJson (userId: string, scale: number): string {
  const candidates = userCandidates(userId, scale).map(({ productId, title, popularity }) => {
    const { head, features } = productText(productId)
    return `{"productId":${JSON.stringify(productId)},"title":${JSON.stringify(title)},${head},"popularity":${JSON.stringify(popularity)},${features}}`
  })
  return `{"userId":${JSON.stringify(userId)},"candidates":[${candidates.join(',')}]}`
}

export function inventoryFor (userId: string, scale: number): InventoryPayload {
  const random = randomFor(userId, 'inventory')
  const ids = candidateIds(userId, scale)
  for (let index = 0; index < scaled(BASE_COUNTS.extraStock, scale); index++) ids.push(productFor(userId, random))
  return {
    region: regionOf(userId),
    items: ids.map((id) => ({
      productId: id,
      available: random() < 0.25 ? 0 : integer(random, 1, 500),
      warehouse: pick(random, WAREHOUSES)
    }))
  }
}

export function loyaltyFor (userId: string, scale: number): LoyaltyPayload {
  const random = randomFor(userId, 'loyalty')
  const history = Array.from({ length: scaled(BASE_COUNTS.loyaltyEvents, scale) }, () => {
    const earned = random() < 0.8
    return {
      at: new Date(REFERENCE_TIME - integer(random, 0, 730) * DAY_MS).toISOString(),
      delta: earned ? integer(random, 10, 800) : -integer(random, 100, 1500),
      reason: earned ? pick(random, ['purchase', 'review', 'referral', 'birthday']) : 'redemption'
    }
  })
  const points = Math.max(0, history.reduce((sum, event) => sum + event.delta, 0))
  const tier = [...TIERS].reverse().find((step) => points >= step.threshold)!.name
  return { userId, points, tier, tiers: TIERS, history }
}

/** Each upstream's body for a user at a payload scale: what its mock serves, and what tests and benchmarks feed the merge. */
export const BODY_GENERATORS: Record<string, (userId: string, scale: number) => unknown> = {
  profile: (userId) => profileFor(userId),
  orders: ordersFor,
  recommendations: recommendationsFor,
  inventory: inventoryFor,
  loyalty: loyaltyFor
}

/** Faster JSON for the bodies that cost the most to serialise: the same text as JSON.stringify of the generator's value. */
export const BODY_SERIALIZERS: Record<string, (userId: string, scale: number) => string> = {
  recommendations: recommendationsJson
}
