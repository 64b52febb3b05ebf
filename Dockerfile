# Multi-stage build of the hub and its two mocks. SQLite, the Postgres client library and
# OpenSSL (TLS to Postgres; built with perl and make, both in the build image) are compiled in
# from source, so the runtime image needs nothing but glibc.
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin hub --bin mock-operator --bin mock-rgs

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/hub hub
COPY --from=build /src/target/release/hub /src/target/release/mock-operator /src/target/release/mock-rgs /usr/local/bin/
USER hub
WORKDIR /var/lib/hub
ENV LISTEN_ADDR=0.0.0.0:3000
EXPOSE 3000
ENTRYPOINT ["hub"]
CMD ["serve"]
