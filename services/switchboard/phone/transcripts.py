"""Post-call transcripts: WebVTT or JSON documents, parsed into final segments in start order, seq 1..n.

Order rule of a document: cues sorted by start time; cues that start together keep their order in the document
(JSON: their `seq` when given). The position in that order is the cue's seq, which makes a re-upload of the
same document idempotent.
"""

from __future__ import annotations

import html
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from switchboard.phone.wire import PhoneInputError, Segment, load_json

_TIMING = re.compile(r"^\s*(\S+)\s+-->\s+(\S+)(?:\s+.*)?$")
_TIME = re.compile(r"^(?:(\d{1,3}):)?([0-5]\d):([0-5]\d)\.(\d{3})$")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]+)>")
_TAG = re.compile(r"<[^>]*>")


def _ms(stamp: str, cue: int) -> int:
    match = _TIME.match(stamp)
    if match is None:
        raise PhoneInputError(f"WebVTT cue {cue}: bad timestamp {stamp[:40]!r}", "bad_webvtt")
    hours, minutes, seconds, millis = match.groups()
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis)


def _payload(lines: list[str]) -> tuple[str, str]:
    """(speaker, text) of a cue payload: the first <v Name> voice tag names the speaker, other tags go."""
    raw = " ".join(line.strip() for line in lines if line.strip())
    voice = _VOICE.search(raw)
    speaker = voice.group(1).strip() if voice else "unknown"
    return speaker, html.unescape(_TAG.sub("", raw)).strip()


def parse_webvtt(text: str, call_id: str, max_text_chars: int) -> list[Segment]:
    """The cues of a WebVTT document as final segments; raises PhoneInputError (bad_webvtt) when malformed."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    blocks = [b.split("\n") for b in re.split(r"\n{2,}", text.strip("\n"))]
    if not blocks or not re.match(r"^WEBVTT(?:[ \t].*)?$", blocks[0][0]):
        raise PhoneInputError("not a WebVTT document: the first line must be WEBVTT", "bad_webvtt")
    cues: list[tuple[int, int, int, str, str]] = []
    for number, block in enumerate(blocks[1:], start=1):
        if block[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        timing_at = 0 if "-->" in block[0] else 1
        if timing_at >= len(block) or "-->" not in block[timing_at]:
            raise PhoneInputError(f"WebVTT block {number}: a cue needs a timing line (start --> end)", "bad_webvtt")
        match = _TIMING.match(block[timing_at])
        if match is None:
            raise PhoneInputError(f"WebVTT block {number}: bad timing line", "bad_webvtt")
        start, end = _ms(match.group(1), number), _ms(match.group(2), number)
        if end < start:
            raise PhoneInputError(f"WebVTT cue {number}: ends before it starts", "bad_webvtt")
        speaker, said = _payload(block[timing_at + 1 :])
        if said:
            cues.append((start, len(cues), end, speaker, said))
    return _segments(call_id, [(s, i, e, sp, t, 1.0) for s, i, e, sp, t in cues], max_text_chars)


class _JsonCue(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seq: int | None = Field(default=None, ge=0)
    speaker: Annotated[str, Field(max_length=32)] = "unknown"
    text: str
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ends_after_start(self) -> _JsonCue:
        if self.end_ms < self.start_ms:
            raise ValueError(f"segment ends ({self.end_ms} ms) before it starts ({self.start_ms} ms)")
        return self


class _JsonTranscript(BaseModel):
    model_config = ConfigDict(extra="ignore")

    call_id: str = ""
    segments: list[_JsonCue]


def parse_json_transcript(raw: bytes, call_id: str, max_text_chars: int) -> list[Segment]:
    """`{"call_id": ..., "segments": [{seq?, speaker, text, start_ms, end_ms, confidence?}]}` as final segments."""
    data = load_json(raw, "transcript")
    try:
        doc = _JsonTranscript.model_validate({"segments": data} if isinstance(data, list) else data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PhoneInputError(f"invalid transcript: {where}: {first['msg']}") from exc
    if doc.call_id and doc.call_id != call_id:
        raise PhoneInputError(f"transcript is of call {doc.call_id}, uploaded to call {call_id}")
    cues = [
        (c.start_ms, c.seq if c.seq is not None else i, c.end_ms, c.speaker, c.text.strip(), c.confidence)
        for i, c in enumerate(doc.segments)
    ]
    return _segments(call_id, [c for c in cues if c[4]], max_text_chars)


def _segments(call_id: str, cues: list[tuple[int, int, int, str, str, float]], max_text_chars: int) -> list[Segment]:
    if not cues:
        raise PhoneInputError("transcript has no segments with text", "empty_transcript")
    cues.sort(key=lambda c: (c[0], c[1]))
    segments = []
    for seq, (start, _, end, speaker, text, confidence) in enumerate(cues, start=1):
        if len(text) > max_text_chars:
            raise PhoneInputError(f"transcript segment {seq}: text over {max_text_chars} characters", "too_large", 413)
        segments.append(
            Segment(
                type="segment",
                call_id=call_id,
                seq=seq,
                speaker=speaker[:32],
                text=text,
                start_ms=start,
                end_ms=end,
                confidence=confidence,
                final=True,
            )
        )
    return segments
