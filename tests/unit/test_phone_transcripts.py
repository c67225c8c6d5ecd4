"""Post-call transcripts: WebVTT and JSON documents into final segments in start order."""

from __future__ import annotations

import json

import pytest

from switchboard.phone.transcripts import parse_json_transcript, parse_webvtt
from switchboard.phone.wire import PhoneInputError

VTT = """\ufeffWEBVTT Kind: captions

STYLE
::cue { color: white }

NOTE the agent speaks first
over two lines

intro
00:00:01.250 --> 00:00:02.000 position:10%
<v.loud Agent>您好，<b>客服</b>小王</v>

01:00:00.000 --> 01:00:01.000
<v Caller>last
line two</v>

00:00:00.000 --> 00:00:01.000
<c.yellow>no voice &lt;tag&gt;</c>

00:00:05.000 --> 00:00:05.000

"""


def test_webvtt_cues_become_segments_in_start_order_with_speakers() -> None:
    segments = parse_webvtt(VTT.replace("\n", "\r\n"), "c1", 100)
    assert [(s.seq, s.start_ms, s.end_ms, s.speaker, s.text) for s in segments] == [
        (1, 0, 1000, "unknown", "no voice <tag>"),
        (2, 1250, 2000, "Agent", "您好，客服小王"),
        (3, 3_600_000, 3_601_000, "Caller", "last line two"),
    ]
    assert all(s.final and s.call_id == "c1" for s in segments)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "first line must be WEBVTT"),
        ("WEBVTTX\n\n00:00.000 --> 00:01.000\nx", "first line must be WEBVTT"),
        ("WEBVTT\n\nid only\nno timing here", "timing line"),
        ("WEBVTT\n\n00:00.000 -> 00:01.000\nx", "timing line"),
        ("WEBVTT\n\n00:00.0 --> 00:01.000\nx", "bad timestamp"),
        ("WEBVTT\n\n00:61.000 --> 00:01.000\nx", "bad timestamp"),
        ("WEBVTT\n\n00:02.000 --> 00:01.000\nx", "ends before it starts"),
        ("WEBVTT\n\nNOTE nothing else", "no segments"),
    ],
)
def test_bad_webvtt_is_refused_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(PhoneInputError) as refused:
        parse_webvtt(text, "c1", 100)
    assert words in refused.value.reason


def test_json_transcript_orders_by_start_then_seq() -> None:
    doc = {
        "call_id": "c1",
        "segments": [
            {"seq": 2, "speaker": "agent", "text": "b", "start_ms": 100, "end_ms": 200},
            {"seq": 1, "speaker": "customer", "text": "a", "start_ms": 100, "end_ms": 150, "confidence": 0.5},
            {"speaker": "customer", "text": "  ", "start_ms": 0, "end_ms": 10},
            {"speaker": "customer", "text": "first", "start_ms": 0, "end_ms": 10},
        ],
    }
    segments = parse_json_transcript(json.dumps(doc).encode(), "c1", 100)
    assert [(s.seq, s.text) for s in segments] == [(1, "first"), (2, "a"), (3, "b")]
    assert segments[1].confidence == 0.5


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"nope", "not JSON"),
        (b"[" * 50_000, "nested deeper"),
        (b'[{"text": "\\udfff", "start_ms": 0, "end_ms": 1}]', "lone surrogate"),
        (b'{"call_id": "other", "segments": [{"text": "x", "start_ms": 0, "end_ms": 1}]}', "uploaded to call c1"),
        (b'[{"text": "x", "start_ms": 5, "end_ms": 1}]', "before it starts"),
        (b'{"segments": [{"text": "x"}]}', "start_ms"),
    ],
)
def test_bad_json_transcripts_are_refused(raw: bytes, words: str) -> None:
    with pytest.raises(PhoneInputError) as refused:
        parse_json_transcript(raw, "c1", 100)
    assert words in refused.value.reason
