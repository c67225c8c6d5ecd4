"""Write the presence operator API's OpenAPI document to docs/operator-api.json (`--check`: fail if it differs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from switchboard.presence.api import openapi_document

TARGET = Path(__file__).resolve().parent.parent / "docs" / "operator-api.json"


def render() -> str:
    """The document as it is committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    """Write (or with --check, compare) the document."""
    text = render()
    if "--check" in sys.argv[1:]:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET} is out of date: run scripts/export_operator_api.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
