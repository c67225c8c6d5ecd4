"""Which language a customer wrote in: "zh", "en", or "other" (enough to route 跨境 buyers to the right group)."""

from __future__ import annotations

import re

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_OTHER_SCRIPT = re.compile(r"[\u0400-\u04ff\u0600-\u06ff\u0e00-\u0e7f\u0900-\u097f]")
# Common words of other Latin-script languages that buyers write in (es, fr, de, pt, id, vi).
_NON_ENGLISH_LATIN = re.compile(
    r"\b(?:el|los|las|que|por|para|pedido|hola|gracias|bonjour|merci|commande|bitte|danke|bestellung|"
    r"obrigado|encomenda|terima|kasih|pesanan|xin|cảm|ơn)\b|[àâçéèêëîïôûùüÿñæœßãõáíóúăđơư]",
    re.IGNORECASE,
)


def detect_language(text: str) -> str:
    """ "zh" when Chinese characters dominate, "en" for English, "other" for anything else (or nothing)."""
    han = len(_HAN.findall(text))
    words = _LATIN_WORD.findall(text)
    latin = sum(len(w) for w in words)
    if _KANA_HANGUL.search(text) and han == 0:
        return "other"
    if han == 0 and latin == 0:
        return "other" if _OTHER_SCRIPT.search(text) else ""
    # One Han character carries about as much as a three-letter word: weigh them so.
    if han * 3 >= latin:
        return "zh"
    if _OTHER_SCRIPT.search(text) or len(_NON_ENGLISH_LATIN.findall(text)) * 4 > len(words):
        return "other"
    return "en"
