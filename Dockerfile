# syntax=docker/dockerfile:1
# ferry's container image: one binary for every role (migrate, worker, scheduler, serve),
# with pg_dump/pg_restore for backups. Build: docker build -t ferry .
#   --build-arg PG_MAJOR=17   client tools of another PostgreSQL major (see docs/operations.md)

ARG RUST_VERSION=1.95
ARG DEBIAN_SUITE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_SUITE} AS build
WORKDIR /src
COPY . .
# The caches keep downloaded crates and compiled dependencies between builds; the binary is
# copied out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ferry-cli \
    && cp target/release/ferry /usr/local/bin/ferry

FROM debian:${DEBIAN_SUITE}-slim
# pg_dump must be at least the server's major version (ferry refuses an older one), and
# pg_restore of the same major restores its dumps. 15 is Debian bookworm's own package; any
# other major comes from the PostgreSQL project's apt repository (PGDG), whose signing key
# ships in Debian's postgresql-common package.
ARG PG_MAJOR=15
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates tini; \
    if [ "$PG_MAJOR" != 15 ]; then \
        apt-get install -y --no-install-recommends postgresql-common; \
        /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
    fi; \
    apt-get install -y --no-install-recommends "postgresql-client-$PG_MAJOR"; \
    rm -rf /var/lib/apt/lists/*; \
    "/usr/lib/postgresql/$PG_MAJOR/bin/pg_dump" --version; \
    useradd --system --uid 10001 --user-group --home-dir /var/lib/ferry --create-home ferry

# The versioned directory first, so `pg_dump` is the binary of PG_MAJOR rather than
# Debian's wrapper script.
ENV PATH="/usr/lib/postgresql/${PG_MAJOR}/bin:${PATH}" \
    FERRY_LOG_FORMAT=json

COPY --from=build /usr/local/bin/ferry /usr/local/bin/ferry

USER ferry
WORKDIR /var/lib/ferry
# tini forwards SIGTERM to ferry (which drains and exits 0) and reaps pg_dump's children.
ENTRYPOINT ["/usr/bin/tini", "--", "ferry"]
CMD ["--help"]
# `ferry healthcheck` checks the role named by FERRY_ROLE (api, worker, scheduler); the
# image needs no shell tools for it.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/ferry", "healthcheck"]
