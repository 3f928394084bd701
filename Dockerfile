# syntax=docker/dockerfile:1
# dts-operator image: a static musl binary in an empty (scratch) image.
#
#   docker build -t dts-operator:0.1.0 .
#
# The binary needs no libc, no shell and no CA bundle (reqwest and kube use
# rustls with the bundled webpki roots; in-cluster the kube client reads the
# service account CA), so the final image holds exactly one file.
# hack/build-image.sh builds the same final stage from a binary built on the host.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Native target of the build platform (x86_64 or aarch64), linked statically.
RUN rustup target add "$(uname -m)-unknown-linux-musl"
# The whole workspace (crates/ and testcluster/ are members that Cargo.lock
# covers); only the dts-operator binary is built.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
 && cargo build --release --locked --target "$target" --bin dts-operator \
 && cp "target/$target/release/dts-operator" /dts-operator

FROM scratch
LABEL org.opencontainers.image.title="dts-operator" \
      org.opencontainers.image.description="Kubernetes operator that stops Alibaba Cloud DTS jobs declared as DtsJob resources" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /dts-operator /dts-operator
# Non-root (the distroless "nonroot" uid); the chart also sets runAsNonRoot.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/dts-operator", "run"]
