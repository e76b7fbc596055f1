"""The documentation's fenced code blocks: every ```LANG block of README.md
and docs/*.md, with the file and line it starts on."""
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[A-Za-z0-9_+-]*)\s*$")


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str

    def __str__(self):
        return f"{self.path.relative_to(ROOT)}:{self.line} ({self.lang or 'plain'})"


def doc_files():
    files = sorted((ROOT / "docs").glob("*.md"))
    readme = ROOT / "README.md"
    return ([readme] if readme.exists() else []) + files


def blocks(lang=None, files=None):
    out = []
    for path in files or doc_files():
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            indent, start, body = len(m.group("indent")), i + 1, []
            i += 1
            while i < len(lines) and not re.match(r"^ *```\s*$", lines[i]):
                body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
                i += 1
            assert i < len(lines), f"{path}:{start}: code block never closed"
            i += 1
            b = Block(path, start, m.group("lang").lower(), "\n".join(body) + "\n")
            if lang is None or b.lang == lang:
                out.append(b)
    return out
