# syntax=docker/dockerfile:1
# meshlite proxy image (Istio's proxyv2 role): Envoy + pilot-agent + the iptables
# tools the init container needs. See images/README.md.
#
#   docker build -t meshlite/proxyv2:dev --build-arg VERSION=$(git describe --always) .
#
# The same image is the sidecar (user 1337, `pilot-agent proxy sidecar`) and the
# init container (root with NET_ADMIN/NET_RAW, `pilot-agent istio-iptables ...`).

ARG GO_IMAGE=golang:1.26-bookworm
# Pinned to an official Envoy release; override with --build-arg ENVOY_IMAGE=...
ARG ENVOY_IMAGE=envoyproxy/envoy:v1.34.5

FROM ${GO_IMAGE} AS build
ARG VERSION=0.0.0-dev
ARG COMMIT=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/meshlite/meshlite/cmd/internal/version.Version=${VERSION} -X github.com/meshlite/meshlite/cmd/internal/version.GitCommit=${COMMIT}" \
      -o /out/pilot-agent ./cmd/pilot-agent

FROM ${ENVOY_IMAGE}
# Both iptables variants (legacy and nft): the agent picks the one the node uses.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1337 istio-proxy \
 && useradd --system --uid 1337 --gid 1337 --home-dir /home/istio-proxy --create-home istio-proxy \
 && mkdir -p /etc/istio/proxy /etc/istio/config /var/lib/istio/envoy /var/run/secrets/workload-spiffe-uds /var/run/secrets/workload-spiffe-credentials \
 && chown -R 1337:1337 /etc/istio /var/lib/istio /var/run/secrets/workload-spiffe-uds /var/run/secrets/workload-spiffe-credentials
COPY --from=build /out/pilot-agent /usr/local/bin/pilot-agent
ENV ISTIO_META_ISTIO_PROXY_SHA=meshlite
USER 1337:1337
WORKDIR /
ENTRYPOINT ["/usr/local/bin/pilot-agent"]
