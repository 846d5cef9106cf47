#!/usr/bin/env python3
"""Checks the Kubernetes manifests for what the README promises about them.

kubernetes-validate checks that they are well-formed; this checks the operational rules:
at least two replicas, WORKER_ID from the pod name, readiness on /readyz (with a timeout
above the server's own wait for the database) and liveness on /healthz, a termination grace period above the longest stop, non-root with a read-only
root filesystem and resource requests, and secrets only through secretKeyRef.

    python3 scripts/check-manifests.py deploy/kubernetes
"""
import pathlib
import sys

import yaml

SECRET_VARS = {"DATABASE_URL", "ADMIN_TOKEN", "VIEWER_TOKEN", "DEEPGRAM_API_KEY",
               "SUPABASE_SERVICE_ROLE_KEY", "SMTP_URL", "ALERT_WEBHOOK_URL"}


def docs(folder):
    for path in sorted(pathlib.Path(folder).glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


def pod_spec(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return doc["spec"]["template"]["spec"]
    return None


def check(folder):
    errors = []
    deployments = 0
    for name, doc in docs(folder):
        spec = pod_spec(doc)
        if spec is None:
            continue
        where = f"{name} {doc['kind']}/{doc['metadata']['name']}"
        pod_sc = spec.get("securityContext", {})
        if not pod_sc.get("runAsNonRoot"):
            errors.append(f"{where}: runAsNonRoot is not set")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            if not sc.get("readOnlyRootFilesystem"):
                errors.append(f"{where}: container {c['name']} has a writable root filesystem")
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{where}: container {c['name']} allows privilege escalation")
            if "requests" not in c.get("resources", {}):
                errors.append(f"{where}: container {c['name']} has no resource requests")
            env = {e["name"]: e for e in c.get("env", [])}
            for var in SECRET_VARS & env.keys():
                ref = env[var].get("valueFrom", {}).get("secretKeyRef")
                if "value" in env[var] or ref is None:
                    errors.append(f"{where}: {var} must come from a secretKeyRef")
        if doc["kind"] != "Deployment":
            continue
        deployments += 1
        if doc["spec"].get("replicas", 1) < 2:
            errors.append(f"{where}: fewer than 2 replicas")
        c = spec["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        worker = env.get("WORKER_ID", {}).get("valueFrom", {}).get("fieldRef", {})
        if worker.get("fieldPath") != "metadata.name":
            errors.append(f"{where}: WORKER_ID must come from the pod name (metadata.name)")
        if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            errors.append(f"{where}: readiness probe must be /readyz")
        if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
            errors.append(f"{where}: liveness probe must be /healthz")
        # /readyz waits at most 3 s for the database, then answers 503: a probe that gives
        # up sooner sees a timeout instead of the answer.
        if c.get("readinessProbe", {}).get("timeoutSeconds", 1) <= 3:
            errors.append(f"{where}: readiness probe timeoutSeconds must exceed 3 "
                          "(the server's wait for the database)")
        # A stop waits SHUTDOWN_GRACE_SECS for running jobs, then JOB_CANCEL_GRACE_SECS for
        # them to stop when asked, then drains HTTP and flushes notices (10 s each, which
        # may overlap): the pod must not be killed before that ends.
        grace = int(env.get("SHUTDOWN_GRACE_SECS", {}).get("value", "30"))
        cancel = int(env.get("JOB_CANCEL_GRACE_SECS", {}).get("value", "30"))
        needed = grace + cancel + 20
        if spec.get("terminationGracePeriodSeconds", 30) <= needed:
            errors.append(f"{where}: terminationGracePeriodSeconds must exceed "
                          f"SHUTDOWN_GRACE_SECS + JOB_CANCEL_GRACE_SECS + 20 ({needed})")
    if deployments == 0:
        errors.append(f"{folder}: no Deployment found")
    return errors


if __name__ == "__main__":
    problems = check(sys.argv[1] if len(sys.argv) > 1 else "deploy/kubernetes")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("manifests follow the deployment rules")
