"""The desk and board pages (web/) and the browser their tests drive: built and installed by `make prepare`.

The pages are TypeScript bundled with esbuild into web/dist (out of git); npm packages come from
web/package-lock.json with `npm ci`. They are rebuilt when a source, the lock or the build script is newer than the
build. Chromium is Debian's package (the tests drive it with Playwright's `executable_path`, never a downloaded one).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from switchboard_tools.stack.debian import apt_install

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "web"
BUILT = WEB / "dist" / ".built"
# A Chinese font and colour emoji (the channel icons) for legible pages in Debian's chromium.
FONTS = ("fonts-wqy-zenhei", "fonts-noto-color-emoji")
CHROMIUM_HINT = (
    "Chromium is missing: install Debian's packages (`apt-get install -y chromium fonts-wqy-zenhei`) as root"
)


def _newest_source() -> float:
    sources = [WEB / "package-lock.json", WEB / "build.mjs", *sorted((WEB / "src").rglob("*"))]
    return max(p.stat().st_mtime for p in sources if p.is_file())


def build_pages(force: bool = False) -> Path:
    """Build web/dist when it is missing or older than its sources; returns the build directory."""
    if not force and BUILT.exists() and BUILT.stat().st_mtime >= _newest_source():
        return BUILT.parent
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing: install Node.js 18+ (Debian: `apt-get install -y nodejs npm`)")
    installed = WEB / "node_modules" / ".package-lock.json"
    # A lock changed since the last install (a package added) needs a fresh `npm ci` too.
    if force or not installed.exists() or installed.stat().st_mtime < (WEB / "package-lock.json").stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "--silent", "build"], cwd=WEB, check=True)
    BUILT.touch()
    return BUILT.parent


def ensure_chromium() -> str:
    """The path of Debian's chromium, installing the package (and a Chinese font, so screenshots of the pages are
    legible) first when it is missing and we are root."""
    found = shutil.which("chromium")
    if found and _has_cjk_font():
        return found
    if apt_install("chromium", *FONTS):
        found = shutil.which("chromium")
    if found:
        return found
    raise RuntimeError(CHROMIUM_HINT)


def _has_cjk_font() -> bool:
    """True when fontconfig knows a font with Chinese glyphs (without one, the pages' Chinese shows as boxes)."""
    if shutil.which("fc-list") is None:
        return False
    listed = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False)
    return bool(listed.stdout.strip())
