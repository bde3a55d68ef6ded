#!/usr/bin/env bash
# Provision the tools that check the Helm chart (deploy/helm/socd) without Docker or
# GitHub: helm and kubeconform built with `go install` from the Go module proxy, and
# the JSON schemas kubeconform validates against.
#
#   bash scripts/k8s-tools.sh          # idempotent; fast when everything is present
#   eval "$(bash scripts/k8s-tools.sh --env)"   # HELM, KUBECONFORM, SOCD_K8S_SCHEMAS
#
# Schemas (kubeconform normally downloads them from GitHub, unreachable here):
# * Kubernetes: the PyPI package kubernetes-validate ships the "local-strict" JSON
#   schemas of each Kubernetes release (generated from the release's OpenAPI spec,
#   additionalProperties false). `pip download` fetches the wheel; the schemas of the
#   versions in K8S_VERSIONS are extracted with their `$ref`s made relative, so
#   kubeconform resolves them from disk.
# * Prometheus Operator CRDs (ServiceMonitor, PrometheusRule): controller-gen (Go
#   module sigs.k8s.io/controller-tools) generates the CRDs from the operator's Go API
#   module (github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring),
#   exactly as the operator's own build does; each CRD's openAPIV3Schema becomes a
#   strict JSON schema (additionalProperties false wherever properties are listed and
#   unknown fields are not preserved), as openapi2jsonschema does.
#
# Everything goes to $SOCD_TOOLS_DIR (default ~/.cache/socd/k8s-tools); a stamp file
# per step records the versions it was made with. Exits non-zero, loudly, on failure.
set -euo pipefail

HELM_VERSION=v3.16.4
KUBECONFORM_VERSION=v0.6.7
CONTROLLER_GEN_VERSION=v0.19.0
PROMETHEUS_OPERATOR_VERSION=v0.86.2
KUBERNETES_VALIDATE_VERSION=1.37.0
# Oldest supported, the one helm 3.16 renders for by default, newest packaged.
K8S_VERSIONS="1.28.0 1.31.0 1.37.0"

TOOLS_DIR=${SOCD_TOOLS_DIR:-$HOME/.cache/socd/k8s-tools}
GOBIN_DIR=$TOOLS_DIR/bin
SCHEMA_DIR=$TOOLS_DIR/schemas
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ "${1:-}" == "--env" ]]; then
    printf 'HELM=%s\nKUBECONFORM=%s\nSOCD_K8S_SCHEMAS=%s\n' \
        "$GOBIN_DIR/helm" "$GOBIN_DIR/kubeconform" "$SCHEMA_DIR"
    exit 0
fi

die() { echo "k8s-tools: $*" >&2; exit 1; }

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[[ -x "$GO" ]] || die "the Go toolchain is needed (go install); not found on PATH or at $GO"

PYTHON=${PYTHON:-}
if [[ -z "$PYTHON" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi

mkdir -p "$GOBIN_DIR" "$SCHEMA_DIR"
# One provisioning at a time (parallel test runs share the cache).
if command -v flock >/dev/null; then
    exec 9>"$TOOLS_DIR/.lock"
    flock 9
fi

# go_tool NAME MODULE@VERSION [LDFLAGS]: install once per version and flags (the stamp
# holds both).
go_tool() {
    local name=$1 pkg=$2 ldflags=${3:-} stamp=$GOBIN_DIR/.$1.version
    if [[ -x "$GOBIN_DIR/$name" && "$(cat "$stamp" 2>/dev/null)" == "$pkg $ldflags" ]]; then
        return 0
    fi
    echo "k8s-tools: go install $pkg" >&2
    GOBIN=$GOBIN_DIR GOFLAGS=-mod=mod "$GO" install -ldflags="$ldflags" "$pkg" \
        || die "go install $pkg failed"
    echo "$pkg $ldflags" > "$stamp"
}

# The variables helm's own Makefile sets: without them `helm version` is empty and the
# default Kubernetes version of `helm template` is 1.20 instead of helm 3.16's 1.31.
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=31"
done
go_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$helm_ldflags"
go_tool kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"

# --- Kubernetes schemas ------------------------------------------------------------
k8s_stamp=$SCHEMA_DIR/.k8s.version
k8s_want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION $K8S_VERSIONS"
if [[ "$(cat "$k8s_stamp" 2>/dev/null)" != "$k8s_want" ]]; then
    dl=$TOOLS_DIR/download
    mkdir -p "$dl"
    wheel=$dl/kubernetes_validate-$KUBERNETES_VALIDATE_VERSION-py3-none-any.whl
    if [[ ! -f "$wheel" ]]; then
        echo "k8s-tools: pip download kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
            "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" -d "$dl" \
            || die "pip download kubernetes-validate failed"
    fi
    rm -rf "$SCHEMA_DIR/k8s"
    "$PYTHON" - "$wheel" "$SCHEMA_DIR/k8s" $K8S_VERSIONS <<'EOF' || die "extracting schemas failed"
import json
import sys
import zipfile
from pathlib import Path

wheel, out, versions = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
z = zipfile.ZipFile(wheel)


def relative(node):
    # kubernetes-validate resolves "/api/_definitions.json" with its own resolver;
    # kubeconform resolves $refs against the schema file, so make them relative.
    if isinstance(node, dict):
        node.pop("$id", None)
        return {k: (v.replace("/api/_definitions.json", "_definitions.json")
                    if k == "$ref" and isinstance(v, str) else relative(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [relative(v) for v in node]
    return node


for version in versions:
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
    names = [n for n in z.namelist() if n.startswith(prefix) and n.endswith(".json")]
    if not names:
        sys.exit(f"no schemas for Kubernetes {version} in {wheel}")
    # kubeconform's file name template: {{ .NormalizedKubernetesVersion }}-... below.
    target = out / f"v{version}-standalone-strict"
    target.mkdir(parents=True)
    for name in names:
        doc = relative(json.loads(z.read(name)))
        (target / name[len(prefix):]).write_text(json.dumps(doc))
    print(f"k8s-tools: {len(names)} schemas for Kubernetes {version}", file=sys.stderr)
EOF
    echo "$k8s_want" > "$k8s_stamp"
fi

# --- Prometheus Operator CRD schemas -----------------------------------------------
crd_stamp=$SCHEMA_DIR/.crds.version
crd_want="prometheus-operator $PROMETHEUS_OPERATOR_VERSION controller-gen $CONTROLLER_GEN_VERSION"
if [[ "$(cat "$crd_stamp" 2>/dev/null)" != "$crd_want" ]]; then
    go_tool controller-gen "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION"
    work=$TOOLS_DIR/crdgen
    rm -rf "$work" "$SCHEMA_DIR/crds"
    mkdir -p "$work"
    api=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
    printf 'module socd.local/crdgen\n\ngo 1.24\n' > "$work/go.mod"
    printf 'package crdgen\n\nimport _ "%s/v1"\n' "$api" > "$work/tools.go"
    (
        cd "$work"
        GOFLAGS=-mod=mod "$GO" get "$api@$PROMETHEUS_OPERATOR_VERSION" >&2
        GOFLAGS=-mod=mod "$GO" mod tidy >&2
        PATH=$(dirname "$GO"):$PATH "$GOBIN_DIR/controller-gen" \
            crd:crdVersions=v1,maxDescLen=0,allowDangerousTypes=true \
            "paths=$api/v1" output:crd:dir="$work/out"
    ) || die "generating the Prometheus Operator CRDs failed"
    "$PYTHON" - "$work/out" "$SCHEMA_DIR/crds" <<'EOF' || die "converting the CRDs failed"
import json
import sys
from pathlib import Path

import yaml

src, out = Path(sys.argv[1]), Path(sys.argv[2])


def strict(node):
    # openapi2jsonschema's --strict: closed objects unless the CRD preserves unknown
    # fields; int-or-string and nullable become JSON schema types.
    if isinstance(node, list):
        return [strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: strict(v) for k, v in node.items()}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("anyOf", None)
        node["type"] = ["integer", "string"]
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    return node


count = 0
for path in sorted(src.glob("*.yaml")):
    crd = yaml.safe_load(path.read_text())
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    for version in crd["spec"]["versions"]:
        schema = strict(version["schema"]["openAPIV3Schema"])
        schema["properties"]["apiVersion"]["enum"] = [f"{group}/{version['name']}"]
        schema["properties"]["kind"]["enum"] = [kind]
        target = out / group / f"{kind.lower()}_{version['name']}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(schema))
        count += 1
print(f"k8s-tools: {count} CRD schemas", file=sys.stderr)
EOF
    echo "$crd_want" > "$crd_stamp"
fi

"$GOBIN_DIR/helm" version --short >/dev/null || die "helm does not run"
"$GOBIN_DIR/kubeconform" -v >/dev/null || die "kubeconform does not run"
