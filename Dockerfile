# Build stage: compile the release binary. No libpq or OpenSSL is needed (diesel-async
# speaks the PostgreSQL protocol itself; TLS is rustls).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p api-server && strip target/release/api-server

# Runtime stage: a small image with the binary only. Certificates for TLS are compiled in
# (web PKI roots), so no CA bundle is required.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home jobs
COPY --from=build /src/target/release/api-server /usr/local/bin/api-server
USER jobs
ENV BIND_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["api-server"]
CMD ["serve"]
