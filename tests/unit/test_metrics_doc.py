"""docs/metrics.md keeps its table format, and the reader of tests/metrics_doc.py refuses a page that breaks it."""

from __future__ import annotations

import pytest

from tests.metrics_doc import EVERY_SERVICE, SERVICES, MetricsDocError, documented, for_service, parse

PAGE = """# Metrics
## every service
| name | type | labels | meaning |
|---|---|---|---|
| `sb_ready` | gauge | service | 1 while ready |
| `sb_x_total` | counter | service, topic | Records *(after first event)* |
## router
| name | type | labels | meaning |
|---|---|---|---|
| `sb_h_seconds` | histogram | - | Time |
"""


def test_the_page_parses_with_every_section() -> None:
    sections = documented()
    assert set(sections) == {EVERY_SERVICE, *SERVICES}
    names = {m.name for m in sections[EVERY_SERVICE]}
    assert {"sb_build_info", "sb_ready", "sb_consumer_lag", "sb_consumer_lag_seconds"} <= names
    assert for_service("router")["sb_ready"].labels == ("service",)


def test_rows_read_as_name_type_labels_and_the_first_event_mark() -> None:
    sections = parse(PAGE)
    ready, counter = sections[EVERY_SERVICE]
    assert (ready.name, ready.type, ready.labels, ready.after_first_event) == ("sb_ready", "gauge", ("service",), False)
    assert counter.labels == ("service", "topic") and counter.after_first_event
    (hist,) = sections["router"]
    assert hist.labels == ()
    assert hist.sample_names() == {"sb_h_seconds_bucket", "sb_h_seconds_sum", "sb_h_seconds_count"}


def test_a_metric_some_services_share_is_one_row_naming_them() -> None:
    row = "| `sb_w` | gauge | service, kind | Exported by router, chat and phone (once, here). Open sockets |\n"
    sections = parse(PAGE + row)
    (shared,) = [m for m in sections["router"] if m.name == "sb_w"]
    assert shared.exporters == ("router", "chat", "phone")
    ready = sections[EVERY_SERVICE][0]
    assert ready.exporters == () and sections["router"][0].exporters == ("router",)


@pytest.mark.parametrize(
    ("row", "complaint"),
    [
        ("| sb_y | gauge | - | no backticks |", "backticks"),
        ("| `sb_y` | gauge | - |", "4 columns"),
        ("| `sb_y` | meter | - | unknown type |", "unknown type"),
        ("| `sb_y` | gauge | a b | bad labels |", "comma-separated"),
        ("## chat\n| `sb_ready` | gauge | service | again |", "documented twice"),
        ("| `sb_w` | gauge | kind | Exported by chat and phone (not the router's) |", "Exported by"),
        ("| `sb_w` | gauge | kind | Exported by router and pager. |", "Exported by"),
    ],
)
def test_a_broken_row_is_refused(row: str, complaint: str) -> None:
    with pytest.raises(MetricsDocError, match=complaint):
        parse(PAGE + row + "\n")
