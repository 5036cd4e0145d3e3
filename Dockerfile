# syntax=docker/dockerfile:1
#
# pushwoosh-worker: one image for the worker (`run`, the default) and the local
# Pushwoosh-compatible sandbox (`sandbox --listen 0.0.0.0:8087`).
#
#   docker build -t pushwoosh-worker .
#   docker run --rm -e AMQP_URL=... -e PUSHWOOSH_AUTH_TOKEN=... -p 9464:9464 pushwoosh-worker

# ---- build ------------------------------------------------------------------------
# Edition 2024 needs Rust 1.85+, the crate says 1.88+. The bookworm image has gcc, which
# is all aws-lc-sys (rustls' crypto) needs; no OpenSSL, no cmake.
FROM rust:1-bookworm AS build
WORKDIR /src

# Dependencies first, against a dummy main: this layer is rebuilt only when a Cargo.toml
# or Cargo.lock change, not on every edit of src/. The workspace names bench/, so cargo
# needs its manifest (and a target) to load the workspace, and a library of the worker
# for bench/ to depend on; the image never builds the bench.
COPY Cargo.toml Cargo.lock ./
COPY bench/Cargo.toml ./bench/
RUN mkdir src bench/src \
    && echo 'fn main() {}' > src/main.rs \
    && cp src/main.rs bench/src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin pushwoosh-worker \
    && rm -rf src

# The real source. COPY keeps the files' own (older) modification times, so touch
# them: otherwise cargo may judge the dummy binary up to date and ship it.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin pushwoosh-worker \
    && ./target/release/pushwoosh-worker --version

# ---- runtime ----------------------------------------------------------------------
# Same Debian release as the build image, so the glibc the binary links against is there.
FROM debian:bookworm-slim

# rustls verifies api.pushwoosh.com against the system's CA bundle. Unpinned on purpose:
# the bundle should be the release's current one.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed, numeric non-root user, so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 pushwoosh \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin pushwoosh

COPY --from=build /src/target/release/pushwoosh-worker /usr/local/bin/pushwoosh-worker
# Read from the working directory at start; every key in it is also the built-in
# default, so this is documentation in place and a file to mount over.
COPY config/default.toml /app/config/default.toml

WORKDIR /app
USER 10001:10001

# /metrics, /livez, /healthz, /readyz. The built-in default listens on 127.0.0.1 only,
# which nothing outside the container can reach.
ENV PUSHWOOSH_WORKER__HTTP__LISTEN=0.0.0.0:9464
EXPOSE 9464

# No HEALTHCHECK: debian:bookworm-slim has neither curl nor wget and the binary has no
# probe subcommand, so there is nothing to run one with. Orchestrators probe
# GET /livez and GET /readyz on port 9464 themselves (see deploy/kubernetes).
#
# The binary is PID 1 and handles SIGTERM itself: it stops consuming, lets jobs in
# flight finish for shutdown.grace_period_ms (25 s by default), hands back the rest
# and exits 0. Give it longer than that before SIGKILL (docker stop -t 30,
# compose stop_grace_period, Kubernetes terminationGracePeriodSeconds).
ENTRYPOINT ["pushwoosh-worker"]
CMD ["run"]
