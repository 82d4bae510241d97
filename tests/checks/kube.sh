#!/usr/bin/env bash
# infra/k8s/ must pass kubernetes-validate (strict, Kubernetes 1.35): every
# file as written and everything `kubectl kustomize` builds from them (the
# Caddyfile ConfigMap included), all in the apna namespace, which enforces the
# "restricted" Pod Security Standard. (The objects the driver generates are
# validated by the Rust test sandbox::kube::objects::tests.)
set -euo pipefail
cd "$(dirname "$0")/../.."
version=1.35.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

files=()
for f in infra/k8s/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || files+=("$f")
done
kubernetes-validate --quiet --strict -k "$version" "${files[@]}"

kubectl kustomize --load-restrictor LoadRestrictionsNone infra/k8s >"$tmp/built.yaml"
kubernetes-validate --quiet --strict -k "$version" "$tmp/built.yaml"

python3 - "$tmp/built.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = sorted(d["kind"] for d in docs)
for d in docs:
    if d["kind"] != "Namespace":
        assert d["metadata"].get("namespace") == "apna", d["metadata"]
ns = next(d for d in docs if d["kind"] == "Namespace")
assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("caddyfile-"))
assert cm["data"]["Caddyfile"] == open("Caddyfile").read(), "the ConfigMap is the top-level Caddyfile"
# The gate runs from the sandbox image, pinned by digest where kustomization.yaml says.
kust = yaml.safe_load(open("infra/k8s/kustomization.yaml"))
pin = next(i for i in kust["images"] if i["name"] == "apna-preview")
caddy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "caddy")
gate = next(c for c in caddy["spec"]["template"]["spec"]["containers"] if c["name"] == "preview-gate")
assert gate["image"] == f'{pin["newName"]}@{pin["digest"]}', gate["image"]
for d in docs:
    for c in (d.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []):
        assert not c["image"].endswith(":latest") and ":" in c["image"], c["image"]
for need in ["Deployment", "LimitRange", "Namespace", "NetworkPolicy", "ResourceQuota", "Role", "RoleBinding", "Service"]:
    assert need in kinds, need
print(f"infra/k8s: {len(docs)} objects valid for Kubernetes 1.35 ({', '.join(sorted(set(kinds)))})")
PY
