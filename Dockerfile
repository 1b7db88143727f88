# syntax=docker/dockerfile:1
# The exporter alone: built without the `demo` feature (no simulator, no demo command), run as
# UID 65532 from a distroless image (no shell, no package manager), on a read-only root filesystem.
#
#   docker build --build-arg KEE_GIT_REVISION=$(git rev-parse --short=12 HEAD) -t kube-event-exporter .
#
# .ci/run runs the same `cargo build` line (there is no Docker engine in CI).

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Shown by --version and the build_info metric (.git is not sent to the build context).
ARG KEE_GIT_REVISION=unknown
ENV KEE_GIT_REVISION=${KEE_GIT_REVISION}
RUN cargo build --profile dist --locked --no-default-features --features static-openssl --bin kube-event-exporter
# The symbols served link-order.txt (Cargo.toml, [profile.dist]); the image does not need them.
RUN strip target/dist/kube-event-exporter

# glibc and libgcc from the same Debian release as the build stage; OpenSSL (the Kafka receiver's
# TLS, through librdkafka) is linked into the binary (feature static-openssl). Nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/dist/kube-event-exporter /kube-event-exporter
USER 65532:65532
# mimalloc commits its arenas on demand rather than eagerly. The program already keeps its
# memory off transparent huge pages itself (src/footprint.rs), which is most of what this saved;
# kept for what is left (README "Performance"). mimalloc reads it before main.
ENV MIMALLOC_ARENA_EAGER_COMMIT=0
EXPOSE 2112
ENTRYPOINT ["/kube-event-exporter"]
# The same flags as deploy/base/deployment.yaml (tests/rbac.rs runs the exporter with them).
CMD ["run", "--config", "/etc/kube-event-exporter/config.yaml", "--metrics-address", "0.0.0.0:2112"]
