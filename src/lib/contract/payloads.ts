import { exceedsJsonBudget, MAX_JSON_DEPTH } from '../merge/json-budget.js'

/**
 * The bodies the gateway expects from each upstream, and their readers. A reader checks the shape it depends on and
 * throws {@link MalformedPayloadError} otherwise, so a 200 with the wrong shape is treated like broken JSON.
 */

export interface ProfilePayload {
  id: string
  name: string
  email: string
  tier: string
  region: string
  createdAt: string
  preferences: { currency: string, language: string, marketingOptIn: boolean, favouriteCategories: string[] }
}

export interface OrderLine { productId: string, category: string, unitPrice: number, quantity: number }
export interface Order { id: string, placedAt: string, status: 'delivered' | 'shipped' | 'cancelled', items: OrderLine[], total: number }
export interface OrdersPayload { userId: string, orders: Order[] }

export interface Candidate { productId: string, title: string, category: string, price: number, popularity: number, features: number[] }
export interface RecommendationsPayload { userId: string, candidates: Candidate[] }

export interface StockLevel { productId: string, available: number, warehouse: string }
export interface InventoryPayload { region: string, items: StockLevel[] }

export interface LoyaltyEvent { at: string, delta: number, reason: string }
export interface LoyaltyPayload { userId: string, points: number, tier: string, tiers: Array<{ name: string, threshold: number }>, history: LoyaltyEvent[] }

export class MalformedPayloadError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'MalformedPayloadError'
  }
}

type Json = Record<string, unknown>

const decoder = new TextDecoder('utf-8', { fatal: true })

/**
 * Decodes and parses a body; broken UTF-8 or JSON, or a body over its structural budget (nesting depth, number of
 * values: checked on the bytes before parsing, so a hostile body costs a scan, not a parse), becomes a
 * {@link MalformedPayloadError}.
 */
export function parseJson (body: Uint8Array, maxElements = Number.POSITIVE_INFINITY): unknown {
  const overBudget = exceedsJsonBudget(body, { maxDepth: MAX_JSON_DEPTH, maxElements })
  if (overBudget !== null) throw new MalformedPayloadError(overBudget)
  try {
    return JSON.parse(decoder.decode(body))
  } catch {
    throw new MalformedPayloadError('body is not valid JSON')
  }
}

function object (value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new MalformedPayloadError(`${what} is not an object`)
  return value as Json
}

function array (value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new MalformedPayloadError(`${what} is not an array`)
  return value
}

function text (value: unknown, what: string): string {
  if (typeof value !== 'string') throw new MalformedPayloadError(`${what} is not a string`)
  return value
}

function finite (value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new MalformedPayloadError(`${what} is not a finite number`)
  return value
}

/**
 * Checks that every element is a finite number and hands back the parsed array itself: a copy per candidate would cost
 * more than the check. (Parsed JSON has no holes, so every element is checked, as a map would.)
 */
function finiteNumbers (value: unknown, what: string, element: string): number[] {
  const values = array(value, what)
  for (let index = 0; index < values.length; index++) finite(values[index], element)
  return values as number[]
}

export function readProfile (json: unknown): ProfilePayload {
  const body = object(json, 'profile')
  const preferences = object(body.preferences, 'profile.preferences')
  return {
    id: text(body.id, 'profile.id'),
    name: text(body.name, 'profile.name'),
    email: text(body.email, 'profile.email'),
    tier: text(body.tier, 'profile.tier'),
    region: text(body.region, 'profile.region'),
    createdAt: text(body.createdAt, 'profile.createdAt'),
    preferences: {
      currency: text(preferences.currency, 'preferences.currency'),
      language: text(preferences.language, 'preferences.language'),
      marketingOptIn: preferences.marketingOptIn === true,
      favouriteCategories: array(preferences.favouriteCategories, 'preferences.favouriteCategories').map((category) => text(category, 'favourite category'))
    }
  }
}

const ORDER_STATUSES = new Set(['delivered', 'shipped', 'cancelled'])

export function readOrders (json: unknown): OrdersPayload {
  const body = object(json, 'orders')
  return {
    userId: text(body.userId, 'orders.userId'),
    orders: array(body.orders, 'orders.orders').map((value) => {
      const order = object(value, 'order')
      const status = text(order.status, 'order.status')
      if (!ORDER_STATUSES.has(status)) throw new MalformedPayloadError(`unknown order status ${JSON.stringify(status)}`)
      return {
        id: text(order.id, 'order.id'),
        placedAt: text(order.placedAt, 'order.placedAt'),
        status: status as Order['status'],
        total: finite(order.total, 'order.total'),
        items: array(order.items, 'order.items').map((item) => {
          const line = object(item, 'order line')
          return {
            productId: text(line.productId, 'line.productId'),
            category: text(line.category, 'line.category'),
            unitPrice: finite(line.unitPrice, 'line.unitPrice'),
            quantity: finite(line.quantity, 'line.quantity')
          }
        })
      }
    })
  }
}

export function readRecommendations (json: unknown): RecommendationsPayload {
  const body = object(json, 'recommendations')
  return {
    userId: text(body.userId, 'recommendations.userId'),
    candidates: array(body.candidates, 'recommendations.candidates').map((value) => {
      const candidate = object(value, 'candidate')
      return {
        productId: text(candidate.productId, 'candidate.productId'),
        title: text(candidate.title, 'candidate.title'),
        category: text(candidate.category, 'candidate.category'),
        price: finite(candidate.price, 'candidate.price'),
        popularity: finite(candidate.popularity, 'candidate.popularity'),
        features: finiteNumbers(candidate.features, 'candidate.features', 'feature')
      }
    })
  }
}

export function readInventory (json: unknown): InventoryPayload {
  const body = object(json, 'inventory')
  return {
    region: text(body.region, 'inventory.region'),
    items: array(body.items, 'inventory.items').map((value) => {
      const item = object(value, 'stock level')
      return {
        productId: text(item.productId, 'stock.productId'),
        available: finite(item.available, 'stock.available'),
        warehouse: text(item.warehouse, 'stock.warehouse')
      }
    })
  }
}

export function readLoyalty (json: unknown): LoyaltyPayload {
  const body = object(json, 'loyalty')
  return {
    userId: text(body.userId, 'loyalty.userId'),
    points: finite(body.points, 'loyalty.points'),
    tier: text(body.tier, 'loyalty.tier'),
    tiers: array(body.tiers, 'loyalty.tiers').map((value) => {
      const tier = object(value, 'tier')
      return { name: text(tier.name, 'tier.name'), threshold: finite(tier.threshold, 'tier.threshold') }
    }),
    history: array(body.history, 'loyalty.history').map((value) => {
      const event = object(value, 'loyalty event')
      return { at: text(event.at, 'event.at'), delta: finite(event.delta, 'event.delta'), reason: text(event.reason, 'event.reason') }
    })
  }
}
