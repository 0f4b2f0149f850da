"""Every relative link and image in every Markdown file of the repository resolves to a file that is there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML = re.compile(r"""<(?:img|a)\b[^>]*?(?:src|href)=["']([^"']+)["']""", re.I)


def markdown_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / line for line in listed.split()]


def relative_targets(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks are not links
    text = re.sub(r"`[^`\n]*`", "", text)
    found = LINK.findall(text) + HTML.findall(text)
    return [t for t in found if not re.match(r"^(?:[a-z][a-z0-9+.-]*:|#|//)", t, re.I)]


def test_the_link_finder_sees_links_and_skips_the_rest():
    text = ('see [a](docs/a.md#part), ![plot](x/y.png "t"), [web](https://e.org), [top](#top), `[no](code.md)`, '
            '<img src="z.png">\n```\n[no](block.md)\n```')
    assert relative_targets(text) == ["docs/a.md#part", "x/y.png", "z.png"]


@pytest.mark.parametrize("md", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(md):
    missing = [t for t in relative_targets(md.read_text()) if not (md.parent / t.split("#")[0]).exists()]
    assert missing == [], f"{md.relative_to(REPO)} links to missing files: {missing}"
