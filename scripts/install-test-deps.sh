#!/usr/bin/env bash
# Installs what the tests need beyond Rust and PostgreSQL, when it is missing:
#   promtool   (Debian package prometheus)   checks the /metrics text and the alert rules
#   chromium + chromedriver (Debian)         drive the dashboard's browser tests
#   schemathesis (PyPI)                      fuzzes the API from its OpenAPI description
#   kubernetes-validate (PyPI)               checks deploy/kubernetes against the bundled
#                                            Kubernetes schemas (offline)
#   wrk (Debian)                             HTTP load for the API benchmark (bench falls
#                                            back to a built-in load loop without it)
#   pg_dump (Debian postgresql-client)       compares migrated schemas (db tests)
#   pgbouncer (Debian)                       the pooler tests, in session and transaction mode
# Idempotent: does nothing when everything is present.
set -euo pipefail

need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v pg_dump >/dev/null || need_apt+=(postgresql-client)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need_apt+=(pgbouncer)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v schemathesis >/dev/null; then
  echo "installing schemathesis"
  python3 -m pip install -q --disable-pip-version-check schemathesis
  hash -r
fi

if ! command -v kubernetes-validate >/dev/null; then
  echo "installing kubernetes-validate"
  python3 -m pip install -q --disable-pip-version-check kubernetes-validate
  hash -r
fi
