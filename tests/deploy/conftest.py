"""Fixtures for the deployment tests: the .deb (built once a session), helm,
kubeconform and their schemas.

``scripts/k8s-tools.sh`` provisions them (``go install`` from the Go module proxy,
schemas from PyPI and the Prometheus Operator's Go API module) into a cache directory,
once per session; it is fast when everything is already there. When it cannot, the
tests that need the tools FAIL with its output: they never skip.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "socd"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
K8S_TOOLS = REPO / "scripts" / "k8s-tools.sh"
# The Kubernetes versions scripts/k8s-tools.sh extracts schemas for: the chart's
# kubeVersion floor, helm 3.16's default and the newest packaged.
K8S_VERSIONS = ("1.28.0", "1.31.0", "1.37.0")
RELEASE = "soc"
NAMESPACE = "socd"


@dataclass(frozen=True)
class K8sTools:
    helm: Path
    kubeconform: Path
    schemas: Path

    def schema_locations(self) -> list[str]:
        """kubeconform -schema-location arguments for the local schema directory."""
        return [
            "-schema-location",
            f"{self.schemas}/k8s/{{{{ .NormalizedKubernetesVersion }}}}-standalone"
            "{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json",
            "-schema-location",
            f"{self.schemas}/crds/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_"
            "{{ .ResourceAPIVersion }}.json",
        ]


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package, built once per session by scripts/build-deb.sh (a venv with every
    dependency: about a minute) for every test that installs it."""
    from tests.deploy import tool

    tool("dpkg-deb")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(["bash", str(REPO / "scripts" / "build-deb.sh"), "--out", str(out)],
                            capture_output=True, text=True, check=False, timeout=900)
    assert result.returncode == 0, f"build-deb.sh: {result.returncode}\n{result.stdout}\n" \
        f"{result.stderr}"
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.exists(), result.stdout
    assert path.name.startswith("socd_")
    assert path.name.endswith(".deb")
    return path


@pytest.fixture(scope="session")
def k8s_tools() -> K8sTools:
    """helm and kubeconform with local schemas; fails (never skips) without them."""
    proc = subprocess.run(["bash", str(K8S_TOOLS)], capture_output=True, text=True,
                          timeout=1800, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/k8s-tools.sh could not provision helm/kubeconform "
                    f"(exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    env = subprocess.run(["bash", str(K8S_TOOLS), "--env"], capture_output=True, text=True,
                         check=True).stdout
    paths = dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
    tools = K8sTools(Path(paths["HELM"]), Path(paths["KUBECONFORM"]),
                     Path(paths["SOCD_K8S_SCHEMAS"]))
    for path in (tools.helm, tools.kubeconform):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is not executable after scripts/k8s-tools.sh", pytrace=False)
    return tools


@dataclass(frozen=True)
class Rendering:
    """The manifests of one `helm template` run."""

    text: str
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind)
                 if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def workloads(self) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def run_helm(tools: K8sTools, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools.helm), *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO)


def template_args(values: Iterable[Path] = (), sets: Mapping[str, str] | None = None,
                  kube_version: str = "1.31.0") -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", kube_version]
    for path in values:
        args += ["-f", str(path)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


@pytest.fixture(scope="session")
def render(k8s_tools: K8sTools) -> Callable[..., Rendering]:
    """render(values=[...], sets={...}) -> Rendering; fails the test if helm fails."""
    cache: dict[tuple[Any, ...], Rendering] = {}

    def _render(values: Iterable[Path] = (), sets: Mapping[str, str] | None = None,
                kube_version: str = "1.31.0") -> Rendering:
        values = tuple(values)
        key = (values, tuple(sorted((sets or {}).items())), kube_version)
        if key not in cache:
            proc = run_helm(k8s_tools, *template_args(values, sets, kube_version))
            assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
            docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
            cache[key] = Rendering(proc.stdout, docs)
        return cache[key]

    return _render


def write_values(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path
