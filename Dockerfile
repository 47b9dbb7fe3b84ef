# syntax=docker/dockerfile:1
#
# Gosling's images:
#
#   server (default target): gosling server, gosling worker --queue
#     mothergoose|uglyfox and gosling rift serve, on distroless static, as
#     the non-root user 65532, with OpenTofu for the workers.
#       docker build -t gosling .
#   runner: the official gitlab-runner image plus the agent alone
#     (cmd/gosling-agent, installed as /usr/local/bin/gosling: its command
#     lines are gosling's), for serverless runners (ECS tasks, Lambda
#     functions, Serverless Containers) and VM agents.
#       docker build --target runner -t gosling-runner .
#
# Build arguments: VERSION (what gosling --version prints), GO_VERSION
# (go.mod's), TOFU_VERSION (scripts/tools.sh's) and GITLAB_RUNNER_VERSION.

ARG GO_VERSION=1.26.8
ARG TOFU_VERSION=1.10.6
ARG GITLAB_RUNNER_VERSION=v18.4.0

# --- build: a static gosling (modernc.org/sqlite is pure Go, so CGO is off).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-alpine AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/gosling ./cmd/gosling && \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/gosling-agent ./cmd/gosling-agent
# The state directory (tofu workspaces, local machines) and the Nest's
# mount point, made here because the runtime image has no shell.
RUN mkdir -p /out/var/lib/gosling /out/etc/gosling/nest

# --- tofu: OpenTofu for the workers. Copied from OpenTofu's minimal image,
# which holds only its release binary (static, signed) at
# /usr/local/bin/tofu: the multi-stage build that OpenTofu documents since
# 1.10. Building it from its Go module, as scripts/tools.sh must on
# machines without a registry, would add minutes and a second toolchain
# pin to every image build for the same program.
FROM ghcr.io/opentofu/opentofu:${TOFU_VERSION}-minimal AS tofu

# --- runner: gitlab-runner's official Alpine image plus the agent. The
# OpenTofu modules start it with their own arguments (gosling agent run
# ..., gosling agent serve ...); the default command runs the agent on
# /var/lib/gosling/agent.
FROM gitlab/gitlab-runner:alpine-${GITLAB_RUNNER_VERSION} AS runner
COPY --from=build /out/gosling-agent /usr/local/bin/gosling
ENV GOSLING_STATE_DIR=/var/lib/gosling
ENTRYPOINT ["/usr/local/bin/gosling"]
CMD ["agent", "run", "--work-dir", "/var/lib/gosling/agent"]

# --- server: the API and the workers. Distroless has no shell and no curl,
# so the image declares no HEALTHCHECK: the orchestrator probes
# /healthz and /readyz on :8080 (API) or /healthz on :9090 (workers), and
# docker-compose.yml does so with `gosling healthcheck URL`.
FROM gcr.io/distroless/static-debian12:nonroot AS server
COPY --from=build /out/gosling /usr/local/bin/gosling
COPY --from=tofu /usr/local/bin/tofu /usr/local/bin/tofu
COPY --from=build --chown=65532:65532 /out/var/lib/gosling /var/lib/gosling
COPY --from=build /out/etc/gosling /etc/gosling
ENV GOSLING_STATE_DIR=/var/lib/gosling \
    GOSLING_TOFU=/usr/local/bin/tofu \
    GOSLING_NEST=/etc/gosling/nest
WORKDIR /var/lib/gosling
USER 65532:65532
# 8080: gosling server (webhooks, REST API, /metrics); 9090: a worker's
# /metrics and /healthz.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/gosling"]
CMD ["server"]
