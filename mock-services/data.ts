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

// The catalogue: product number `ordinal × categories + category`, id `p-<number>`. Each product's id, category and
// price are made once, so a body's hundreds of products cost array lookups, not a hash and a generator each.
const PRODUCT_COUNT = PRODUCTS_PER_CATEGORY * CATEGORIES.length
const productNumber = (categoryIndex: number, ordinal: number) => ordinal * CATEGORIES.length + categoryIndex
const PRODUCT_IDS = Array.from({ length: PRODUCT_COUNT }, (_, product) => `p-${product}`)
const PRODUCT_PRICES = Float64Array.from(PRODUCT_IDS, (id) => money(5 + seededRandom(hashString(`price:${id}`))() * 295))
const categoryName = (product: number) => CATEGORIES[product % CATEGORIES.length]!

function favouriteCategories (userId: string): number[] {
  const random = randomFor(userId, 'favourites')
  const chosen = new Set<number>()
  while (chosen.size < 3) chosen.add(integer(random, 0, CATEGORIES.length - 1))
  return [...chosen]
}

/** A product the user is likely to care about: half the time from a favourite category. */
function productFor (random: Random, favourites: number[]): number {
  const categoryIndex = random() < 0.5 ? pick(random, favourites) : integer(random, 0, CATEGORIES.length - 1)
  return productNumber(categoryIndex, integer(random, 0, PRODUCTS_PER_CATEGORY - 1))
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
  const favourites = favouriteCategories(userId)
  const orders: Order[] = []
  for (let index = 0; index < scaled(BASE_COUNTS.orders, scale); index++) {
    const items = Array.from({ length: integer(random, 1, 6) }, () => {
      const product = productFor(random, favourites)
      return { productId: PRODUCT_IDS[product]!, category: categoryName(product), unitPrice: PRODUCT_PRICES[product]!, quantity: integer(random, 1, 4) }
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

/** The candidate products for a user; inventory stocks exactly these (plus others). */
function candidateProducts (userId: string, scale: number, favourites = favouriteCategories(userId)): number[] {
  const random = randomFor(userId, 'candidates')
  const products = new Set<number>()
  const wanted = scaled(BASE_COUNTS.candidates, scale)
  while (products.size < wanted) products.add(productFor(random, favourites))
  return [...products]
}

/**
 * The service's own view of a product: its embedding plus some noise of its own, in whole ten-thousandths (the body's
 * precision). The same for every user, so its text is made once per product (the catalogue is 24,000 products).
 */
function productFeatures (id: string): number[] {
  const random = seededRandom(hashString(`features:${id}`))
  return Array.from(productEmbedding(id), (value) => Math.round((value + (random() - 0.5) * 0.1) * 10_000))
}

/** The user's own part of each recommended candidate: the product, the words of the title it is shown with, its popularity. */
function userCandidates (userId: string, scale: number) {
  const random = randomFor(userId, 'recommendations')
  return candidateProducts(userId, scale).map((product) => ({
    product,
    adjective: Math.floor(random() * ADJECTIVES.length),
    noun: Math.floor(random() * NOUNS.length),
    popularity: Math.round(random() * 1000) / 1000
  }))
}

const titleOf = (product: number, adjective: number, noun: number) => `${ADJECTIVES[adjective]!} ${categoryName(product)} ${NOUNS[noun]!}`

/** The body as an object: its text ({@link recommendationsJson}) parsed, so the two cannot differ. */
export function recommendationsFor (userId: string, scale: number): RecommendationsPayload {
  return JSON.parse(recommendationsJson(userId, scale)) as RecommendationsPayload
}

// A candidate's text in the order JSON.stringify writes it, `{"productId":…,"title":` + title + `,"category":…,
// "price":…,"popularity":` + popularity + `,"features":[…]}`: the product's three parts made once per product, every
// title once.
const productTexts: Array<{ opening: string, middle: string, features: string }> = []
function productText (product: number) {
  let text = productTexts[product]
  if (text === undefined) {
    const id = PRODUCT_IDS[product]!
    const middle = JSON.stringify({ category: categoryName(product), price: PRODUCT_PRICES[product] }).slice(1, -1)
    const features = JSON.stringify({ features: productFeatures(id).map((tenThousandths) => tenThousandths / 10_000) }).slice(1, -1)
    // Joined, not concatenated: join makes flat strings, which the body's join copies in one go (a concatenation or a
    // slice is a tree the copy has to walk, every time).
    productTexts[product] = text = {
      opening: ['{"productId":', JSON.stringify(id), ',"title":'].join(''),
      middle: [',', middle, ',"popularity":'].join(''),
      features: [',', features, '}'].join('')
    }
  }
  return text
}
const titleTexts = new Map<number, string>()
function titleText (product: number, adjective: number, noun: number) {
  const key = (adjective * CATEGORIES.length + product % CATEGORIES.length) * NOUNS.length + noun
  let text = titleTexts.get(key)
  if (text === undefined) titleTexts.set(key, text = JSON.stringify(titleOf(product, adjective, noun)))
  return text
}

/** Makes every product's texts now (about a quarter of a second), so the first requests of a fresh recommendations mock are not slower. */
export function prepareProductTexts (): void {
  for (let product = 0; product < PRODUCT_COUNT; product++) productText(product)
}

/**
 * The recommendations body as text, made from per-product texts: generating and formatting 6,400 features per body was
 * most of what the recommendations mock spent per request, enough to make it the bottleneck of a batch (it serves 500
 * requests a second there).
 */
export function recommendationsJson (userId: string, scale: number): string {
  // Joined once into a flat string: appending to a string made a rope of a thousand parts, and flattening it cost more
  // than building the parts (a quarter of this mock's time).
  const parts = [`{"userId":${JSON.stringify(userId)},"candidates":[`]
  for (const { product, adjective, noun, popularity } of userCandidates(userId, scale)) {
    const { opening, middle, features } = productText(product)
    if (parts.length > 1) parts.push(',')
    parts.push(opening, titleText(product, adjective, noun), middle, String(popularity), features)
  }
  parts.push(']}')
  return parts.join('')
}

export function inventoryFor (userId: string, scale: number): InventoryPayload {
  const random = randomFor(userId, 'inventory')
  const favourites = favouriteCategories(userId)
  const products = candidateProducts(userId, scale, favourites)
  for (let index = 0; index < scaled(BASE_COUNTS.extraStock, scale); index++) products.push(productFor(random, favourites))
  return {
    region: regionOf(userId),
    items: products.map((product) => ({
      productId: PRODUCT_IDS[product]!,
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
