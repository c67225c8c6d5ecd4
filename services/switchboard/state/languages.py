"""Language codes of agents: ISO 639-1, lowercase, the codes the intake's language detector gives messages.

An agent's `languages` (roster, operator API) are matched against a conversation's detected language
(`InboundMessage.language`), so a code outside ISO 639-1 ("cn", "jp", "EN", "zh-CN") could never match anything and
is refused where it enters, with the code named.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

# Every ISO 639-1 code in use (the 183 two-letter codes of the standard; "bh" is withdrawn). The detector's codes are
# a subset: chinese written simplified or traditional is "zh" alike.
_CODES = """
    aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee el en
    eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja
    jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb
    nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq
    sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
    """
ISO_639_1 = frozenset(_CODES.split())


def language_errors(codes: Iterable[str]) -> list[str]:
    """The codes that are not ISO 639-1 (lowercase two letters), each with what is wrong; empty when all are."""
    errors = []
    for code in codes:
        if code.lower() in ISO_639_1 and code != code.lower():
            errors.append(f"{code!r} must be lowercase ({code.lower()!r})")
        elif code not in ISO_639_1:
            errors.append(f"{code!r} is not an ISO 639-1 language code (e.g. 'zh', 'en', 'ja')")
    return errors


def _check_languages(codes: list[str]) -> list[str]:
    errors = language_errors(codes)
    if errors:
        raise ValueError("; ".join(errors))
    if len(set(codes)) != len(codes):
        raise ValueError("a language is listed twice")
    return codes


# A list of agents' languages as pydantic validates it (roster file, operator API bodies); the API's schema says
# the code's shape, the validator checks it is a code of the standard.
LanguageList = Annotated[
    list[str],
    AfterValidator(_check_languages),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-z]{2}$"},
            "uniqueItems": True,
            "maxItems": len(ISO_639_1),
            "description": "ISO 639-1 language codes, lowercase (zh, en, ja, ko, es, ru, …)",
        }
    ),
]
