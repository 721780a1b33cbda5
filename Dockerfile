# Production image of the gateway. The mock upstreams run from the same image with another command
# (`node dist/mock-services/main.js <name>`): they share the domain code (payload types, product embedding) and one
# build keeps the two from drifting apart.
ARG NODE_IMAGE=node:24-trixie-slim

# --- build: compile TypeScript with the dev dependencies --------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY mock-services ./mock-services
COPY public ./public
RUN npm run build

# --- loadtest: autocannon against the gateway from inside the compose network (compose profile "loadtest") -------
FROM build AS loadtest
USER node
ENTRYPOINT ["node_modules/.bin/autocannon"]
CMD ["--connections", "50", "--duration", "20", "http://gateway:3000/aggregate/user-1"]

# --- runtime: dist/ and production dependencies only, as the unprivileged node user ------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund
# What the containers run and nothing else: no scripts/, bench/, test/ or TypeScript sources (test:compose checks it).
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/mock-services ./dist/mock-services
COPY --from=build /app/dist/public ./dist/public
USER node
EXPOSE 3000
# Slim images have no curl: Node's own fetch checks liveness.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/health`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form, never `npm start`: npm does not forward SIGTERM, and the graceful shutdown depends on receiving it.
CMD ["node", "dist/src/server.js"]

# --- redis: Debian's redis-server on the same base, for the compose profile "distributed" (there is no Docker Hub here
# to pull redis from). In memory only: batches are working state, kept for BATCH_RETAIN_MS at most.
FROM ${NODE_IMAGE} AS redis
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
 && rm -rf /var/lib/apt/lists/*
USER redis
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
