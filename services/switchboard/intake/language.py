"""Which language a customer wrote in: an ISO 639-1 code ("zh", "ja", "ko", "en", "es", "ru", ...), "" when unknown.

Writing systems decide where they are exact; a statistical detector (lingua) decides among the languages that share
the Latin alphabet:

- Han, kana and Hangul are weighed per character against Latin letters (one character carries about what a short
  word does), so "ok 谢谢" and "order里面的颜色改成grey" are Chinese and "Can I pick it up in 上海?" English.
- Hangul is Korean. Hiragana (Japanese grammar: a fifth or more of the CJK characters) is Japanese, and so is
  katakana without Han ("サイズ"); a stray の or a katakana brand name in Chinese ("ユニクロ的衣服") is not.
  Han is Chinese (simplified or traditional) unless it uses kanji that only Japanese writes (発, 売, 払 ...) or a
  Japanese-only word (注文, 返品, 在庫 ...): "注文番号 123456" is Japanese.
- Cyrillic is Russian unless letters only Ukrainian, Belarusian, Kazakh, Serbian or Macedonian use appear. Thai,
  Arabic, Hebrew, Greek, Devanagari, Georgian and Armenian scripts name their language (Arabic script also
  carries Persian and Urdu; the code is "ar", which routes the same).
- Latin: ¿ ¡ ñ are Spanish and Vietnamese's own letters (ơ ư đ ạ ế ...) Vietnamese; a text of at most three words
  with a greeting or thanks of one language ("thx", "merci", "gracias") is that language, as n-gram statistics
  cannot tell one short word; the rest goes to lingua restricted to LATIN_LANGUAGES, in its high-accuracy mode
  (short texts need it), English favoured by ENGLISH_PRIOR since most foreign buyers of a Chinese shop write it.
  Latin-script languages outside that list (Indonesian, Dutch, Vietnamese without its own letters ...) come out
  as the nearest one of it; any of them routes cross-border all the same.
- Links and e-mail addresses do not count. Fewer than two letters and no CJK character (emoji, digits,
  punctuation, "M?"): "".

One detector per process (`detector()`). Its models load on first use, ~160-175 MB for the six Latin languages and
a few seconds, so services load them at start-up off the event loop (`warm_language_detector`), never at their
first message. (lingua's low-accuracy mode takes 14 MB but calls "Where is my order?" German; 15 languages
preloaded take ~290 MB. Figures: docs/routing.md, "Languages".)
"""

from __future__ import annotations

import asyncio
import functools
import re
import unicodedata

from lingua import Language, LanguageDetector, LanguageDetectorBuilder

# The Latin-script languages lingua tells apart here; each costs ~27 MB of models.
LATIN_LANGUAGES: tuple[Language, ...] = (
    Language.ENGLISH,
    Language.SPANISH,
    Language.FRENCH,
    Language.GERMAN,
    Language.PORTUGUESE,
    Language.ITALIAN,
)
# English's confidence is multiplied by this before comparing: "refund pls" or "color?" are English, not German or
# Italian by a hair. A real Spanish or German text wins by far more than this.
ENGLISH_PRIOR = 1.6
# A CJK character weighs as many Latin letters in mixed texts.
CJK_WEIGHT = 3
# Japanese is at least this share hiragana among its CJK characters; less is Chinese with a borrowed の.
HIRAGANA_SHARE = 0.2

# Links and e-mail addresses are in Latin letters whatever the language around them ("看这个 https://...").
_NOT_LANGUAGE = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+\.\S+", re.IGNORECASE)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_HIRAGANA = re.compile(r"[\u3040-\u309f]")
_KATAKANA = re.compile(r"[\u30a0-\u30ff\u31f0-\u31ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
# Scripts of one language (or a family routed the same); the first found with more letters than Latin decides.
_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
    ("ar", re.compile(r"[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
    ("ka", re.compile(r"[\u10a0-\u10ff]")),
    ("hy", re.compile(r"[\u0530-\u058f]")),
)
# Letters of the Cyrillic alphabet that Russian lacks, by the language that has them.
_CYRILLIC_OTHERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("uk", re.compile(r"[ієїґІЄЇҐ]")),
    ("be", re.compile(r"[ўЎ]")),
    ("kk", re.compile(r"[әғқңөұүһӘҒҚҢӨҰҮҺ]")),
    ("sr", re.compile(r"[ђјљњћџЂЈЉЊЋЏ]")),
    ("mk", re.compile(r"[ѓќѕЃЌЅ]")),
)
# Kanji of Japanese's simplified forms (shinjitai) and Japan-made characters, which Chinese writes otherwise.
_JAPANESE_KANJI = re.compile(
    "[発売駅広図沢気楽済対検険験関払込営単様県悪戦転伝鉄読歳帰薬辺変価円黒桜浜塩軽権児従続団庁徳廃訳両覧録労竜満"
    "弁仏拝縦総蔵騒巣遅聴闘脳悩髪抜頼涙暦歯乗畳譲醸粋摂荘捜挿鋳逓黙謡猟緑塁渋獣剣鶏厳恵応縁栄囲圧稲隠穏壊懐拡殻"
    "覚勧歓観寛戯挙暁駆掲渓経継撃倹圏顕鉱砕斎剤雑桟賛釈粛奨焼証縄壌嬢穂瀬斉専銭繊帯滝択徴勅晩塀歩舗豊毎揺霊齢歴"
    "錬枠畑峠働匂戻収実処効]"
)
# Words a Chinese buyer would not write (订单, 退货, 库存, 运费 ...) in shop Japanese written without kana.
_JAPANESE_WORDS = re.compile("注文|返品|在庫|送料|番号|返金|到着|領収|状況")
_SPANISH = re.compile(r"[¿¡ñÑ]")
_WORD = re.compile(r"[^\W\d_]+")
# Greetings, thanks, chat shorthand and shop words of one language only, for texts of at most SHORT_WORDS words.
SHORT_WORDS = 3
_SIGNATURE_WORDS: dict[str, str] = {
    **dict.fromkeys(("thx", "thanks", "thank", "pls", "plz", "please", "hi", "hello", "hey", "ok", "okay"), "en"),
    **dict.fromkeys(("hola", "gracias", "buenas", "talla"), "es"),
    **dict.fromkeys(("merci", "bonjour", "salut"), "fr"),
    **dict.fromkeys(("danke", "hallo", "bitte"), "de"),
    **dict.fromkeys(("obrigado", "obrigada", "olá"), "pt"),
    **dict.fromkeys(("grazie", "ciao", "buongiorno"), "it"),
}
# Models are loaded by detecting these once per language and per n-gram length (lingua loads lazily).
_WARM_TEXTS = (
    "Where is my order? It has not arrived yet.",
    "¿Dónde está mi pedido? Todavía no ha llegado.",
    "Où est ma commande ? Elle n'est pas encore arrivée.",
    "Wo ist meine Bestellung? Sie ist noch nicht angekommen.",
    "Onde está o meu pedido? Ainda não chegou.",
    "Dov'è il mio ordine? Non è ancora arrivato.",
)
_VIETNAMESE = re.compile(r"[ăđơưĂĐƠƯĩũĨŨ\u1ea0-\u1ef9]")


# Every code `detect_language` can answer besides "" (routing configs list them, e.g. the cross-border rule).
LANGUAGE_CODES: frozenset[str] = frozenset(
    {"zh", "ja", "ko", "ru", "es", "vi"}
    | {code for code, _ in _CYRILLIC_OTHERS}
    | {code for code, _ in _SCRIPTS}
    | {language.iso_code_639_1.name.lower() for language in LATIN_LANGUAGES}
    | set(_SIGNATURE_WORDS.values())
)


# What the language of a text is told from: its start. lingua's time grows faster than the text (a 100 KB mail
# body of `{"a":` took 46 s, with the e-mail adapter's event loop blocked all that time); 2,000 characters take
# milliseconds and tell a language as well as the whole would.
DETECT_CHARS = 2000


class LanguageDetection:
    """Tells the language of a text (module docstring); build once per process, it holds the language models."""

    def __init__(self) -> None:
        self._lingua: LanguageDetector = LanguageDetectorBuilder.from_languages(*LATIN_LANGUAGES).build()

    def warm(self) -> None:
        """Load the language models now (seconds of CPU: call it in a worker thread)."""
        for text in _WARM_TEXTS:
            self._lingua.compute_language_confidence_values(text)

    def detect(self, text: str) -> str:
        """The ISO 639-1 code of the text's language, "" when nothing can be told (from its first DETECT_CHARS)."""
        text = _NOT_LANGUAGE.sub(" ", unicodedata.normalize("NFKC", text[:DETECT_CHARS]))
        han, hangul = len(_HAN.findall(text)), len(_HANGUL.findall(text))
        hiragana, katakana = len(_HIRAGANA.findall(text)), len(_KATAKANA.findall(text))
        latin = len(_LATIN.findall(text))
        cjk = han + hiragana + katakana + hangul
        if cjk and cjk * CJK_WEIGHT >= latin:
            return _cjk(text, han, hiragana, katakana, hangul)
        cyrillic = len(_CYRILLIC.findall(text))
        if cyrillic > latin:
            return next((code for code, letters in _CYRILLIC_OTHERS if letters.search(text)), "ru")
        for code, script in _SCRIPTS:
            if len(script.findall(text)) > latin:
                return code
        if latin < 2:
            return ""
        return self._latin(text)

    def _latin(self, text: str) -> str:
        if _SPANISH.search(text):
            return "es"
        if _VIETNAMESE.search(text):
            return "vi"
        words = _WORD.findall(text.casefold())
        if len(words) <= SHORT_WORDS:
            signed = {_SIGNATURE_WORDS[w] for w in words if w in _SIGNATURE_WORDS}
            if len(signed) == 1:
                return signed.pop()
        scores = self._lingua.compute_language_confidence_values(text)
        best = max(
            scores, key=lambda s: s.value * (ENGLISH_PRIOR if s.language == Language.ENGLISH else 1.0), default=None
        )
        return best.language.iso_code_639_1.name.lower() if best is not None and best.value > 0 else ""


def _cjk(text: str, han: int, hiragana: int, katakana: int, hangul: int) -> str:
    kana = hiragana + katakana
    if hangul >= han + kana:
        return "ko"
    if hiragana >= HIRAGANA_SHARE * (han + kana) or (katakana and not han):
        return "ja"
    if _JAPANESE_KANJI.search(text) or _JAPANESE_WORDS.search(text):
        return "ja"
    return "zh"


@functools.cache
def detector() -> LanguageDetection:
    """The process's detector, built on first use (cheap); its models load at its first detections (or `warm`)."""
    return LanguageDetection()


def detect_language(text: str) -> str:
    """The ISO 639-1 code of the language `text` is written in ("zh", "en", "ja" ...), "" when nothing can be told."""
    return detector().detect(text)


async def warm_language_detector() -> None:
    """Load the process's detector's models in a worker thread, so no message waits for them."""
    await asyncio.to_thread(lambda: detector().warm())
