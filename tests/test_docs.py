"""The documentation's relative links land: every file they name exists and every ``#anchor`` is a heading there.

The docs move as the project grows (a section becomes a page of its own); a link left behind should fail here,
not on a reader. Anchors follow GitHub's rule: the heading lower-cased, punctuation dropped, spaces as hyphens,
``-1``, ``-2``... for repeated headings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([*ROOT.glob("*.md"), *ROOT.glob("docs/*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives ``page``'s headings (those inside code fences are not headings)."""
    anchors, counts, fenced = set(), {}, False
    for line in page.read_text(encoding="utf-8").splitlines():
        fenced ^= line.startswith("```")
        heading = None if fenced else re.match(r"#{1,6} (.+)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            anchors.add(f"{slug}-{counts[slug]}" if slug in counts else slug)
            counts[slug] = counts.get(slug, 0) + 1
    return anchors


def broken_links(page: Path) -> list[str]:
    """``page``'s relative links whose file or heading is missing."""
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, runs:...
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path) if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_of_the_docs_lands(page):
    assert broken_links(page) == []


def test_the_link_check_sees_a_missing_page_and_a_missing_heading(tmp_path):
    (tmp_path / "a.md").write_text("# A page\n\n## Its part\n\n```\n# not a heading\n```\n", encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#its-part) [ok](a.md) [web](https://x.org/#y) [gone](c.md) [no](a.md#not-a-heading) "
                    "[no](#nowhere)\n", encoding="utf-8")
    assert broken_links(page) == ["c.md", "a.md#not-a-heading", "#nowhere"]
