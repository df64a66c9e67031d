# syntax=docker/dockerfile:1
# One image, two entrypoints: `wren proxy` (the sidecar, also `wren iptables` for the
# init container) and `wren control-plane`. Build: docker build -t wren:0.1.0 .

# ---- build: compile TypeScript and the SO_ORIGINAL_DST addon ----------------------
FROM node:24-bookworm-slim AS build
# A C compiler for proxy/native/original-dst.c (Node-API headers come from npm).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY common ./common
COPY contract ./contract
COPY certs ./certs
COPY proxy ./proxy
COPY control-plane ./control-plane
COPY cli ./cli
# manifests/validate.ts (CRD schema validation) is compiled when the control plane uses it.
COPY manifests ./manifests
# npm run build = build:addon (cc → proxy/native/build/original-dst.node, copied into
# dist/) + tsc -p tsconfig.build.json (outDir dist).
RUN npm run build \
 && test -f dist/cli/wren.js \
 && test -f dist/proxy/native/build/original-dst.node \
 && npm prune --omit=dev

# ---- runtime ---------------------------------------------------------------------
FROM node:24-bookworm-slim AS runtime
# iptables + iproute2 for the wren-init container (`wren iptables`); both the nft and
# legacy back ends ship in Debian's iptables package.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 2102 wren \
 && useradd --system --uid 2102 --gid 2102 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin wren
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# The proto files the gRPC services load at runtime, and the CRDs (schema validation).
COPY --from=build /src/contract/discovery.proto ./contract/discovery.proto
COPY --from=build /src/manifests/crds ./manifests/crds
# The control plane's web dashboard (plain HTML/CSS/JS, served by its admin port).
COPY --from=build /src/control-plane/dashboard/static ./control-plane/dashboard/static
# UID 2102 is the mesh's proxy UID: iptables never redirects its traffic. Numeric so
# runAsNonRoot can verify it without reading /etc/passwd.
USER 2102:2102
EXPOSE 15000 15001 15006 15010 15014 15017 15020
# The proxy admin listens on 127.0.0.1:15000; probe it with node (the image has no curl).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "require('http').get({host:'127.0.0.1',port:process.env.WREN_ADMIN_PORT||15000,path:'/ready',timeout:2000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
# The young generation's cap, compiling on the main thread and no memory reducer, read by V8 at start-up only, no allocation-site
# pretenuring and no async context frame (cli/heap-flags.ts SIDECAR_NODE_FLAGS; test/dockerfile.test.ts keeps this line and that constant the same).
ENTRYPOINT ["node", "--max-semi-space-size=4", "--no-allocation-site-pretenuring", "--no-concurrent-recompilation", "--no-maglev", "--no-memory-reducer", "--no-async-context-frame", "--disable-sigusr1", "/app/dist/cli/wren.js"]
CMD ["proxy"]
