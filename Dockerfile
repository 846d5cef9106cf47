# The api-server image: `docker build -t background-jobs .` (README "Running in
# production"). About 30 MB: the stripped binary on distroless (glibc and libgcc only, no
# shell, no package manager), running as an unprivileged numeric user so that Kubernetes'
# runAsNonRoot can verify it.

# Build stage: compile the release binary. No libpq or OpenSSL is needed (diesel-async
# speaks the PostgreSQL protocol itself; TLS is rustls).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p api-server && strip target/release/api-server

# Runtime stage. Certificates for TLS (web PKI roots) and the time-zone database are
# compiled into the binary, so the image needs no CA bundle or tzdata; migrations are
# embedded too. The root filesystem may be mounted read-only: the server writes nothing.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/api-server /usr/local/bin/api-server
USER 10001:10001
ENV BIND_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/api-server"]
CMD ["serve"]
