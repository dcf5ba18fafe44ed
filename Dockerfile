# syntax=docker/dockerfile:1
# The mailctl daemon as a container image, built from this checkout and pushed where the cluster pulls from:
#   docker build -t ghcr.io/your-org/mailctl:0.1.0 .
#   docker push ghcr.io/your-org/mailctl:0.1.0
# examples/deploy/kubernetes/statefulset.yaml runs this image. Without Kubernetes:
#   docker run -d --name mailctl -p 127.0.0.1:8425:8425 -v "$PWD/servers.d:/etc/mailctl/servers.d:ro" \
#     -v /srv/mailctl/secrets:/run/secrets:ro -v mailctl-state:/var/lib/mailctl ghcr.io/your-org/mailctl:0.1.0
#   docker exec mailctl mailctl status
# test/examples/dockerfile.test.ts checks this file against the package and the real `mailctl run`.

# Build: `npm ci`, then `npm pack`, whose prepack script generates the types and compiles dist/.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would compile sources that are not copied yet; `npm pack` compiles them below
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm pack --pack-destination /pkg && mv /pkg/mailctl-*.tgz /pkg/mailctl.tgz

# Runtime: Node, tini and the packed package with its production dependencies only (no compiler, sources or tests).
FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
COPY --from=build /pkg/mailctl.tgz /tmp/mailctl.tgz
RUN npm install --global --omit=dev --no-audit --no-fund /tmp/mailctl.tgz && rm /tmp/mailctl.tgz && npm cache clean --force
# uid and gid 10001, as the Kubernetes example runs it. The daemon creates its 0700 state folder inside the volume.
RUN groupadd --gid 10001 mailctl \
  && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin mailctl \
  && mkdir -p /etc/mailctl/servers.d /var/lib/mailctl \
  && chown 10001:10001 /var/lib/mailctl
USER 10001:10001
ENV NODE_ENV=production
VOLUME /var/lib/mailctl
EXPOSE 8425
# The image has no curl: Node asks the daemon's liveness endpoint (no token needed) on the port CMD listens on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8425/livez').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# tini is PID 1: it hands SIGTERM to the daemon (which drains, then exits) and reaps any child.
ENTRYPOINT ["/usr/bin/tini", "--", "mailctl", "run"]
CMD ["--dir", "/etc/mailctl/servers.d", "--state-dir", "/var/lib/mailctl/state", "--secrets-dir", "/run/secrets", "--listen", "0.0.0.0:8425", "--allow-remote"]
