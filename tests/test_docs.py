"""The README and docs/ name only files a fresh clone has, and the README stays short enough to lead."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # [text](target) and ![alt](target)
# `path/with/a.suffix` in backticks: files the text tells a reader to open
PATH = re.compile(r"`((?:aha_interp|docs|figures|masks/tiny|notebooks|tests|benchmarks|experiments)/[\w./{},-]*\.\w+)`")


def _expand(path: str) -> list[str]:
    """`figures/tables/x.{csv,md}` → both files."""
    m = re.search(r"\{([^}]*)\}", path)
    return [path[:m.start()] + alt + path[m.end():] for alt in m.group(1).split(",")] if m else [path]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_named_file_exists(page):
    text = page.read_text()
    missing = []
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (page.parent / target).exists():
            missing.append(target)
    for path in PATH.findall(text):
        for p in _expand(path):
            if "<" not in p and "*" not in p and not (ROOT / p).exists():
                missing.append(p)
    assert not missing, f"{page.name} names files a clone does not have: {missing}"
    assert "../shared" not in text, f"{page.name} points users at ../shared, which a clone does not have"


def test_readme_leads():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
