# The shortener image: a release build on Debian 12 (bookworm), run on distroless's Debian 12
# "cc" image (glibc, libgcc, CA certificates, tzdata; no shell, no package manager) as the
# non-root user 65532. The binary is the entry point; `serve` is the default command, so
# `docker run IMAGE migrate` runs the migrations with the same image.
#
#   docker build -t shortener:local .
#
# Checked by scripts/check-deploy.sh (hadolint). No Docker engine runs on the development
# machines, so this file is linted there, not built: see k8s/README.md.

# ---- build -------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# The dependency layer: the real Cargo.toml and Cargo.lock with placeholder sources, so every
# dependency is compiled into a layer that is reused until the manifest or the lock file
# changes. Cargo refuses a manifest whose explicit targets ([[bench]], [[example]], ...) have no
# source file, so a placeholder is made for each one Cargo.toml names; the placeholders never
# reach the final build (only the library and the binary are built).
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && awk 'function flush() { if (kind != "") { if (path == "") path = dir[kind] "/" name ".rs"; print path } kind = ""; name = ""; path = "" } \
            BEGIN { dir["bench"] = "benches"; dir["example"] = "examples"; dir["test"] = "tests"; dir["bin"] = "src/bin" } \
            /^\[/ { flush(); if (match($0, /^\[\[(bench|example|test|bin)\]\]/)) kind = substr($0, 3, RLENGTH - 4); next } \
            kind != "" && /^name *=/ { split($0, a, "\""); name = a[2] } \
            kind != "" && /^path *=/ { split($0, a, "\""); path = a[2] } \
            END { flush() }' Cargo.toml \
       | while read -r stub; do mkdir -p "$(dirname "$stub")"; echo 'fn main() {}' > "$stub"; done \
    && cargo build --release --locked \
    && rm -rf src target/release/shortener target/release/deps/shortener-* \
              target/release/deps/libshortener-* target/release/.fingerprint/shortener-*

# The service itself: its sources and the SQL migrations `shortener migrate` embeds.
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked \
    && install -D -m 0755 target/release/shortener /out/usr/local/bin/shortener

# ---- runtime -----------------------------------------------------------------------------
# distroless publishes no version tags: the image is pinned by its digest (the multi-arch
# index of cc-debian12:nonroot); update the digest deliberately, e.g. with Renovate.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
LABEL org.opencontainers.image.title="shortener" \
      org.opencontainers.image.description="A URL shortener built for high redirect volume" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY --from=builder /out/ /
# 65532 is distroless's "nonroot" user; numeric, so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# 8080: the public API and redirects. 9090: the admin listener (/metrics, /healthz, /readyz),
# never to be exposed publicly. No HEALTHCHECK: the image has no shell or HTTP client, and
# Compose and Kubernetes probe the admin port themselves.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/shortener"]
CMD ["serve"]
