import { UPSTREAM_NAMES } from './upstreams.js'

// The response contract of GET /aggregate/:userId, as JSON Schema: validated at the door, serialised on the way out.

export const USER_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$'

export const AggregateParamsSchema = {
  type: 'object',
  required: ['userId'],
  properties: { userId: { type: 'string', pattern: USER_ID_PATTERN } },
  additionalProperties: false
} as const

export const AggregateQuerystringSchema = { type: 'object', properties: {}, additionalProperties: false } as const

const nullableString = { type: ['string', 'null'] } as const
const nullableNumber = { type: ['number', 'null'] } as const

const ProfileSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    email: { type: 'string' },
    tier: { type: 'string' },
    region: { type: 'string' },
    createdAt: { type: 'string' },
    preferences: {
      type: 'object',
      properties: {
        currency: { type: 'string' },
        language: { type: 'string' },
        marketingOptIn: { type: 'boolean' },
        favouriteCategories: { type: 'array', items: { type: 'string' } }
      }
    }
  }
} as const

const OrdersSummarySchema = {
  type: 'object',
  properties: {
    count: { type: 'integer' },
    cancelledCount: { type: 'integer' },
    totalSpend: { type: 'number' },
    averageOrderValue: { type: 'number' },
    basketSize: {
      type: 'object',
      properties: { mean: { type: 'number' }, median: { type: 'number' }, p90: { type: 'number' }, max: { type: 'number' } }
    },
    spendByMonth: {
      type: 'array',
      items: { type: 'object', properties: { month: { type: 'string' }, amount: { type: 'number' } } }
    },
    spendByCategory: {
      type: 'array',
      items: { type: 'object', properties: { category: { type: 'string' }, amount: { type: 'number' }, share: { type: 'number' } } }
    },
    lastOrderAt: nullableString
  }
} as const

const RecommendationsSchema = {
  type: 'array',
  items: {
    type: 'object',
    properties: {
      productId: { type: 'string' },
      title: { type: 'string' },
      category: { type: 'string' },
      price: { type: 'number' },
      score: { type: 'number' },
      available: nullableNumber
    }
  }
} as const

const InventorySummarySchema = {
  type: 'object',
  properties: {
    region: nullableString,
    trackedProducts: { type: 'integer' },
    inStock: { type: 'integer' },
    outOfStock: { type: 'integer' },
    lowStock: { type: 'integer' }
  }
} as const

const LoyaltySummarySchema = {
  type: 'object',
  properties: {
    points: { type: 'number' },
    tier: nullableString,
    nextTier: nullableString,
    pointsToNextTier: nullableNumber,
    progress: { type: 'number' },
    lifetimeEarned: { type: 'number' },
    recentActivity: {
      type: 'array',
      items: { type: 'object', properties: { at: { type: 'string' }, delta: { type: 'number' }, reason: { type: 'string' } } }
    }
  }
} as const

const UpstreamReportSchema = {
  type: 'object',
  required: ['status', 'latencyMs', 'fallback'],
  properties: {
    status: { type: 'string', enum: ['ok', 'timeout', 'error', 'rejected', 'malformed', 'cancelled', 'merge-failed'] },
    latencyMs: { type: 'number' },
    fallback: { type: 'string', enum: ['none', 'stale', 'default', 'omitted'] },
    httpStatus: { type: 'integer' }
  }
} as const

export const AggregateBodySchema = {
  type: 'object',
  required: ['userId', 'profile', 'meta'],
  properties: {
    userId: { type: 'string' },
    profile: ProfileSchema,
    orders: OrdersSummarySchema,
    recommendations: RecommendationsSchema,
    inventory: InventorySummarySchema,
    loyalty: LoyaltySummarySchema,
    meta: {
      type: 'object',
      required: ['complete', 'durationMs', 'upstreams'],
      properties: {
        complete: { type: 'boolean' },
        durationMs: { type: 'number' },
        upstreams: {
          type: 'object',
          required: [...UPSTREAM_NAMES],
          properties: Object.fromEntries(UPSTREAM_NAMES.map((name) => [name, UpstreamReportSchema]))
        }
      }
    }
  }
} as const
