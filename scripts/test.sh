#!/usr/bin/env bash
# Runs every test of the workspace against the local PostgreSQL.
#
#   scripts/test.sh            # all tests
#   scripts/test.sh -p db      # extra arguments go to `cargo test`
#
# Installs the few test tools it needs first (scripts/install-test-deps.sh).
# TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the server
# and a maintenance database; each test creates and drops a database of its own there.
set -euo pipefail
cd "$(dirname "$0")/.."

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

scripts/ensure-postgres.sh
scripts/install-test-deps.sh

exec cargo test --workspace "$@"
