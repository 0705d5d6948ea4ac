# The read-receipt service. Build: docker build -t read-receipts .
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY gen ./gen
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The Cassandra schema files, read at start (tsc does not copy them into dist/).
COPY --from=build /app/src/store/cassandra/schema ./src/store/cassandra/schema
USER node
EXPOSE 8080
CMD ["node", "dist/src/main.js"]
