#!/usr/bin/env bash
# Checks the deployment files (a few seconds, no cluster, no network):
#   deploy/kubernetes   kubernetes-validate --strict against the bundled Kubernetes schemas,
#                       plus the rules the README promises (replicas, probes, grace period,
#                       non-root, read-only root, secrets only by secretKeyRef)
#   deploy/prometheus   promtool check rules, promtool test rules
#   deploy/grafana      valid JSON (its metric names are checked against a real scrape by
#                       `cargo test -p api-server --test it production::`)
# Installs what is missing first (scripts/install-test-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== kubernetes-validate --strict deploy/kubernetes"
# kustomization.yaml is kustomize's own file, not a Kubernetes resource.
mapfile -t manifests < <(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
kubernetes-validate --strict --quiet "${manifests[@]}"
python3 scripts/check-manifests.py deploy/kubernetes

echo "== promtool check rules / test rules"
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts_test.yml)

echo "== grafana dashboard is JSON"
for board in deploy/grafana/*.json; do
  python3 -m json.tool "$board" >/dev/null
done
echo "deploy checks passed"
