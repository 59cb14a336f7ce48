# sequencer's container image: `sequencer controller` for the Helm chart and deploy/; with
# SEQUENCER_YAML_S3_PATH set and no arguments it runs that one batch, as the seed's image did.
#   docker build -t sequencer:0.1.0 .

# Build stage: the release binary, from the locked dependency versions.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so that a change of the sources alone reuses their layer.
COPY Cargo.toml Cargo.lock ./
COPY core/Cargo.toml ./core/
RUN mkdir -p src core/src && echo 'fn main() {}' >src/main.rs && touch src/lib.rs core/src/lib.rs \
    && cargo build --release --locked --bin sequencer \
    && rm -rf src core/src
COPY core/src ./core/src
COPY src ./src
RUN touch src/main.rs src/lib.rs core/src/lib.rs \
    && cargo build --release --locked --bin sequencer \
    && strip target/release/sequencer

# Runtime stage: a minimal Debian with CA certificates, running as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 sequencer \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sequencer
COPY --from=build /src/target/release/sequencer /usr/local/bin/sequencer
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sequencer"]
