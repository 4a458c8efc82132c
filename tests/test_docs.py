"""The documentation stays navigable: every relative link and anchor leads somewhere.

README.md, CHANGELOG.md and docs/*.md are parsed with markdown-it-py (the CommonMark parser
rich is built on), so links inside code spans and code blocks are not links, and reference
links resolve as GitHub resolves them. An anchor is checked against the headings of the page
it names, slugged by GitHub's rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])

_PARSER = MarkdownIt("commonmark").enable("table")
# GitHub keeps letters, digits, marks, connector punctuation (`_`), hyphens and spaces
_NOT_SLUG = re.compile(r"[^\w\- ]", re.UNICODE)


def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading with this text (before de-duplication)."""
    return _NOT_SLUG.sub("", text.strip().lower()).replace(" ", "-")


def _walk(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        if token.children:
            yield from _walk(token.children)


def _plain_text(inline: Token) -> str:
    return "".join(
        child.content for child in inline.children or [] if child.type in ("text", "code_inline")
    )


def anchors(markdown: str) -> set[str]:
    """The anchors of a page: its headings' slugs (repeats numbered, as GitHub does)."""
    tokens = _PARSER.parse(markdown)
    seen: dict[str, int] = {}
    found: set[str] = set()
    for opening, inline in pairwise(tokens):
        if opening.type != "heading_open":
            continue
        slug = github_slug(_plain_text(inline))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(markdown: str) -> list[str]:
    """Every link and image target of a page, in order."""
    targets: list[str] = []
    for token in _walk(_PARSER.parse(markdown)):
        if token.type == "link_open":
            targets.append(str(token.attrs["href"]))
        elif token.type == "image":
            targets.append(str(token.attrs["src"]))
    return targets


def broken_links(page: Path, root: Path) -> list[str]:
    """The relative links of `page` that lead nowhere, each with why."""
    root = root.resolve()
    problems: list[str] = []
    for target in links(page.read_text(encoding="utf-8")):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            continue  # a web address: not this test's business
        path = unquote(parts.path)
        destination = (page.parent / path).resolve() if path else page
        if not destination.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
            continue
        if not destination.exists():
            problems.append(f"{target}: no file {destination.relative_to(root)}")
            continue
        if parts.fragment and destination.suffix == ".md":
            fragment = unquote(parts.fragment)
            if fragment not in anchors(destination.read_text(encoding="utf-8")):
                problems.append(
                    f"{target}: no heading #{fragment} in {destination.relative_to(root)}"
                )
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    assert broken_links(page, ROOT) == []


def test_every_page_of_docs_is_linked_from_the_readme() -> None:
    readme = ROOT / "README.md"
    linked = {
        (ROOT / unquote(urlsplit(target).path)).resolve()
        for target in links(readme.read_text(encoding="utf-8"))
        if not urlsplit(target).scheme and urlsplit(target).path
    }
    assert sorted(
        str(page.relative_to(ROOT)) for page in PAGES if page.resolve() not in linked
    ) == ["README.md"]


def test_the_readme_contents_list_every_section_in_order() -> None:
    markdown = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = [
        github_slug(_plain_text(inline))
        for opening, inline in pairwise(_PARSER.parse(markdown))
        if opening.tag == "h2" and opening.type == "heading_open"
    ]
    contents = markdown.split("## Contents", 1)[1].split("\n## ", 1)[0]
    assert [target.removeprefix("#") for target in links(contents)] == [
        section for section in sections if section != "contents"
    ]


def test_the_pages_are_found() -> None:
    names = {str(page.relative_to(ROOT)) for page in PAGES}
    assert {"README.md", "CHANGELOG.md", "docs/configuration.md"} <= names


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Quickstart", "quickstart"),
        ("A first session", "a-first-session"),
        ("Coupa behaviours this plugin relies on", "coupa-behaviours-this-plugin-relies-on"),
        ("The reference host (`coupa-iga`)", "the-reference-host-coupa-iga"),
        ("Hooks: `configure` & `provision`", "hooks-configure--provision"),
        ("[0.1.0] - 2026-12-06", "010---2026-12-06"),
        ("shared_state on Redis", "shared_state-on-redis"),
    ],
)
def test_headings_get_githubs_anchors(heading: str, slug: str) -> None:
    assert anchors(f"# {heading}\n") == {slug}


def test_repeated_headings_are_numbered() -> None:
    assert anchors("## Added\n\n## Added\n\n## Added\n") == {"added", "added-1", "added-2"}


def test_broken_links_and_anchors_are_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Running it\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "# Project\n\n"
        "[fine](docs/guide.md#running-it) [fine too](#project) [web](https://example.com/x#y)\n"
        "`[in code](missing.md)`\n\n"
        "[gone](docs/missing.md) [no heading](docs/guide.md#installing) [self](#nowhere)\n"
        "![picture](docs/missing.png) [up](../elsewhere.md)\n\n"
        "[ref]: docs/guide.md#walking\n\nsee [the guide][ref]\n",
        encoding="utf-8",
    )
    assert broken_links(page, tmp_path) == [
        "docs/missing.md: no file docs/missing.md",
        "docs/guide.md#installing: no heading #installing in docs/guide.md",
        "#nowhere: no heading #nowhere in README.md",
        "docs/missing.png: no file docs/missing.png",
        "../elsewhere.md: outside the repository",
        "docs/guide.md#walking: no heading #walking in docs/guide.md",
    ]
