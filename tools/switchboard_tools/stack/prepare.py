"""`python -m switchboard_tools.stack.prepare`: fetch what the local stack needs once (Kafka jars, redis-server),
build the desk and board pages and install Chromium for their tests, promtool for the metrics checks and kustomize
for the deployment tests."""

from __future__ import annotations

import sys

from switchboard_tools.stack.debian import ensure_promtool
from switchboard_tools.stack.kafka import ensure_jars
from switchboard_tools.stack.kustomize import ensure_kustomize
from switchboard_tools.stack.pages import build_pages, ensure_chromium
from switchboard_tools.stack.redis import ensure_redis_server


def main() -> int:
    """Make sure the Kafka jars are cached, redis-server, chromium, promtool and kustomize are installed and the
    pages are built; say what to do when it cannot."""
    try:
        libs = ensure_jars()
        server = ensure_redis_server()
        pages = build_pages()
        chromium = ensure_chromium()
        promtool = ensure_promtool()
        kustomize = " ".join(ensure_kustomize())
    except Exception as exc:
        print(f"switchboard: cannot prepare the local stack: {exc}", file=sys.stderr)
        return 1
    print(
        f"kafka jars: {libs}\nredis-server: {server}\npages: {pages}\nchromium: {chromium}\npromtool: {promtool}\n"
        f"kustomize: {kustomize}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
