"""docs/operator-api.json is the operator API as the code serves it."""

from __future__ import annotations

import json
from pathlib import Path

from switchboard.presence.api import openapi_document


def test_operator_openapi_is_current(repo_root: Path) -> None:
    committed = json.loads((repo_root / "docs" / "operator-api.json").read_text(encoding="utf-8"))
    assert committed == openapi_document(), "docs/operator-api.json is stale: run scripts/export_operator_api.py"


def test_every_operator_route_needs_a_bearer_token() -> None:
    document = openapi_document()
    for path, operations in document["paths"].items():
        assert path.startswith("/v1/operator/tenants/{tenant_id}/")
        for operation in operations.values():
            assert operation["security"] == [{"HTTPBearer": []}], path


def test_levels_and_languages_are_bounded_in_the_schema() -> None:
    schemas = openapi_document()["components"]["schemas"]
    for body in ("AgentChanges", "TemporaryAgent"):
        props = schemas[body]["properties"]
        levels = next(o for o in props["proficiency"].get("anyOf", [props["proficiency"]]) if o.get("type") == "object")
        (level,) = levels["patternProperties"].values()
        assert (level["type"], level["minimum"], level["maximum"]) == ("integer", 1, 5), body
        languages = next(o for o in props["languages"].get("anyOf", [props["languages"]]) if o.get("type") == "array")
        assert languages["items"]["pattern"] == "^[a-z]{2}$", body
