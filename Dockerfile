# syntax=docker/dockerfile:1
#
# ordergraph: a two-stage image. The builder compiles the release binary from the
# locked dependency graph; the runtime stage is a slim Debian with only the binary,
# CA certificates (TLS to a managed PostgreSQL) and a non-root user.
#
#   docker build -t ordergraph .
#   docker run -p 8080:8080 -v ordergraph-data:/data ordergraph        # embedded SQLite in /data
#   docker compose up                                                   # with PostgreSQL

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the crates.io index, downloaded crates and compiled
# dependencies between builds; the binary is copied out of the cached target dir
# in the same step because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/ordergraph /usr/local/bin/ordergraph

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 ordergraph \
    && useradd --system --uid 10001 --gid ordergraph --home-dir /data --shell /usr/sbin/nologin ordergraph \
    && mkdir -p /data \
    && chown ordergraph:ordergraph /data
COPY --from=builder /usr/local/bin/ordergraph /usr/local/bin/ordergraph

# Listen on all interfaces inside the container (the default 127.0.0.1 would be
# unreachable through a published port); keep the embedded database and the
# generated development secret on the volume.
ENV ORDERGRAPH_BIND=0.0.0.0:8080 \
    ORDERGRAPH_DATA_DIR=/data
VOLUME ["/data"]
WORKDIR /data
USER ordergraph:ordergraph
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ordergraph"]
CMD ["serve"]
