"""HTML mail bodies as the plain text an agent reads (for mail that has no text/plain part)."""

from __future__ import annotations

from html.parser import HTMLParser

_BLOCK = frozenset(
    {"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "footer", "form", "h1", "h2", "h3"}
    | {"h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td"}
    | {"tfoot", "th", "thead", "tr", "ul"}
)
_SKIP = frozenset({"script", "style", "head", "title", "template"})


class _TextCollector(HTMLParser):
    """Collects text; block tags break lines, quoted blocks are marked with "> " so reply stripping drops them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self._skip = 0
        self._quote = 0

    def _newline(self) -> None:
        if self.lines[-1].strip():
            self.lines.append("")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag == "blockquote":
            self._quote += 1
            self._newline()
        elif tag in _BLOCK:
            self._newline()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "blockquote":
            self._quote = max(0, self._quote - 1)
            self._newline()
        elif tag in _BLOCK:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        text = " ".join(data.split())
        if not text:
            return
        if not self.lines[-1] and self._quote:
            self.lines[-1] = "> "
        sep = " " if self.lines[-1] and not self.lines[-1].endswith(" ") else ""
        self.lines[-1] += sep + text


def html_to_text(html: str) -> str:
    """The readable text of an HTML body: no scripts or styles, one line per block, entities decoded."""
    collector = _TextCollector()
    try:
        collector.feed(html)
        collector.close()
    except Exception:  # html.parser is lenient, but a broken document must still give some text
        return " ".join(html.split())
    return "\n".join(line.rstrip() for line in collector.lines).strip()
