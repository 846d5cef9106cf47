#!/usr/bin/env bash
# Starts the machine's PostgreSQL cluster when it is not answering, and waits for it.
set -euo pipefail

host=127.0.0.1
port=5432
if command -v pg_isready >/dev/null && pg_isready -h "$host" -p "$port" -q; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
for _ in $(seq 1 60); do
  if pg_isready -h "$host" -p "$port" -q; then
    exit 0
  fi
  sleep 1
done
echo "PostgreSQL is not answering on $host:$port" >&2
exit 1
