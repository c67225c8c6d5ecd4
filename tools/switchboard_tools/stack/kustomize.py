"""The kustomize that renders deploy/k8s for the deployment tests: `kubectl kustomize` when kubectl is on PATH, else
kustomize built once from the Go module proxy into .cache/bin (Debian's kubectl is too old for components)."""

from __future__ import annotations

import os
import shutil
import subprocess

from switchboard_tools.stack.kafka import ROOT

KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5@v5.7.1"
BIN = ROOT / ".cache" / "bin"
HINT = (
    "neither kubectl nor kustomize is available: install kubectl (https://kubernetes.io/docs/tasks/tools/) or Go "
    f"(`go install {KUSTOMIZE_MODULE}` is what this does with it)"
)


def ensure_kustomize(*, use_kubectl: bool = True) -> list[str]:
    """The command that renders a kustomization folder given as its last argument: `kubectl kustomize` (unless
    `use_kubectl` is False), else .cache/bin/kustomize, built with `go install` when missing; RuntimeError when
    neither can be had."""
    kubectl = shutil.which("kubectl") if use_kubectl else None
    if kubectl is not None:
        return [kubectl, "kustomize"]
    built = BIN / "kustomize"
    if not built.exists():
        go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
        if go is None:
            raise RuntimeError(HINT)
        env = {**os.environ, "GOBIN": str(BIN), "GOFLAGS": "-mod=mod"}
        subprocess.run([go, "install", KUSTOMIZE_MODULE], check=True, env=env, timeout=900)
    return [str(built), "build"]
