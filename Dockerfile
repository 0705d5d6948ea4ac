# The read-receipt service. Build: docker build -t read-receipts .
# Run (it listens on 0.0.0.0, so it needs tenants; README, "Configuration"):
#   docker run -p 8080:8080 -e RECEIPTS_TENANTS='{"tenants":[{"id":"demo","apiKeys":["<32+ characters>"]}]}' read-receipts
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: the base image is Node 24 (the `node` package is for npm scripts elsewhere)
# and gen/ is committed (no buf).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gen ./gen
COPY src ./src
# The CLI (dist/src/cli) is built on the client package's sources.
COPY client ./client
# tsc run by the image's Node, not through an npm script.
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json

# Only what the service needs at run time: no devDependencies, so no `node` package either.
FROM node:24-slim AS runtime-modules
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && test ! -e node_modules/node

FROM node:24-slim
ENV NODE_ENV=production \
    RECEIPTS_HOST=0.0.0.0 \
    RECEIPTS_PORT=8080 \
    RECEIPTS_DATA_DIR=/data \
    RECEIPTS_LOG_FORMAT=json
WORKDIR /app
COPY --from=runtime-modules /app/package.json ./
COPY --from=runtime-modules /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The Cassandra schema files, read at start (tsc does not copy them into dist/).
COPY --from=build /app/src/store/cassandra/schema ./src/store/cassandra/schema
# The embedded store's folder, writable by the user the service runs as.
RUN mkdir -p /data && chown node:node /data
VOLUME /data
USER node
EXPOSE 8080
# Ready (store answering, not draining), asked with the image's Node: slim images have no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.RECEIPTS_PORT}/readyz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/src/main.js"]
