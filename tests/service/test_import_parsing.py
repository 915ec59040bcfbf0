"""The importer's parser: what a source file becomes, file by file, without a database."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from service.importer import (
    DEFAULT_AUTHOR,
    SUMMARY_CHARS,
    Document,
    _slug_of,
    _summary,
    parse,
    plain,
    toctree_entries,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(":mod:`os.path` --- Common", "os.path --- Common", id="role"),
        pytest.param(":ref:`the tutorial <tut-intro>`", "the tutorial", id="role-explicit-title"),
        pytest.param(":keyword:`from<raise>`", "from", id="role-explicit-title-no-space"),
        pytest.param(":func:`~os.path.join`", "join", id="role-tilde-last-part"),
        pytest.param(":mod:`!contextlib`", "contextlib", id="role-bang-no-link"),
        pytest.param(":c:func:`PyObject_New`", "PyObject_New", id="role-domain"),
        pytest.param("``x = 1`` and `os`_", "x = 1 and os", id="literal-and-reference"),
        pytest.param("``**kwargs`` stays", "**kwargs stays", id="literal-keeps-stars"),
        pytest.param("a **strong** and *emphasised* word", "a strong and emphasised word",
                     id="emphasis"),
        pytest.param("a * b * c", "a * b * c", id="lone-stars-stay"),
        pytest.param(r"\*not emphasis\* C:\\dir", r"*not emphasis* C:\dir", id="escapes"),
        pytest.param(r":keyword:`!with`\ -statement", "with-statement", id="escaped-space"),
        pytest.param("  two\n   lines  ", "two lines", id="whitespace-collapsed"),
    ],
)  # fmt: skip
def test_plain_reduces_inline_markup_to_its_text(text: str, expected: str) -> None:
    assert plain(text) == expected


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        pytest.param("library/os.path.rst.txt", "library-os-path", id="rst-txt"),
        pytest.param("guides/caching.md", "guides-caching", id="markdown"),
        pytest.param("about.rst", "about", id="top-level"),
        pytest.param("notes.v2.md", "notes-v2", id="dot-in-stem"),
        pytest.param("whats_new/2024/March.markdown", "whats-new-2024-march", id="nested"),
        pytest.param("README.MD", "readme", id="upper-case-suffix"),
        pytest.param("Über Café.txt", "uber-cafe", id="non-ascii"),
    ],
)
def test_slug_is_the_path_without_source_suffixes(relative: str, expected: str) -> None:
    assert _slug_of(Path(relative)) == expected


LONG = "word " * 100


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("First line\nsecond line.\n\nNext.", "First line second line.",
                     id="first-paragraph"),
        pytest.param("Heading\n=======\n\nBody.", "Body.", id="heading-skipped"),
        pytest.param(".. module:: os\n   :synopsis: OS.\n\nText.", "Text.",
                     id="directive-and-its-body-skipped"),
        pytest.param(":Author: Ann\n:Release: 1\n\nText.", "Text.", id="field-list-skipped"),
        pytest.param("## Sub heading\n\n> quoted\n\nText *here*.", "Text here.",
                     id="markdown-heading-and-quote-skipped"),
        pytest.param("Text.\n.. note:: later", "Text.", id="directive-ends-paragraph"),
        pytest.param(LONG, LONG.strip()[: SUMMARY_CHARS - 1].rstrip() + "…", id="truncated"),
        pytest.param("", "", id="empty"),
    ],
)  # fmt: skip
def test_summary_is_the_first_paragraph_of_prose(source: str, expected: str) -> None:
    summary = _summary(source.splitlines())
    assert summary == expected
    assert len(summary) <= SUMMARY_CHARS


def doc(
    stem: str,
    slug: str,
    title: str,
    summary: str,
    body_format: str,
    author: tuple[str, str] = DEFAULT_AUTHOR,
    category: tuple[str, str] | None = None,
    tags: dict[str, str] | None = None,
) -> Document:
    """The expected document, without its body (the source, which the test fills in)."""
    return Document(
        stem=stem,
        slug=slug,
        title=title,
        summary=summary,
        body="",
        body_format=body_format,
        author=author,
        category=category,
        tags=tags or {},
    )


WHATSNEW = """\
****************************
  What's New In Python 3.2
****************************

:Author: Raymond Hettinger

This article explains the new features in Python 3.2.
"""

STAT = """\
:mod:`!stat` --- Interpreting :class:`~os.stat_result` values
=============================================================

See :ref:`the file system chapter <filesys>` for more.
"""

OS_PATH = """\
:mod:`os.path` --- Common pathname manipulations
================================================

.. module:: os.path
   :synopsis: Operations on pathnames.
.. py:module:: posixpath

This module implements some useful functions on pathnames.
"""

CACHING = """\
---
title: Caching in practice
author: Ann Lee <ann@example.com>
tags: [redis, Cache Aside]
summary: How hot reads stay in memory.
---
# Caching with **Redis**

Cache-aside keeps hot reads in memory.
"""


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        pytest.param(
            "guides/whatsnew.rst", WHATSNEW,
            doc("guides/whatsnew", "guides-whatsnew", "What's New In Python 3.2",
                "This article explains the new features in Python 3.2.", "rst",
                author=("raymond-hettinger", "Raymond Hettinger"),
                category=("guides", "Guides")),
            id="rst-overlined-title-and-author-field",
        ),
        pytest.param(
            "library/stat.rst", STAT,
            doc("library/stat", "library-stat", "stat --- Interpreting stat_result values",
                "See the file system chapter for more.", "rst",
                category=("library", "Library")),
            id="rst-sphinx-roles-in-title",
        ),
        pytest.param(
            "library/os.path.rst.txt", OS_PATH,
            doc("library/os.path", "library-os-path", "os.path --- Common pathname manipulations",
                "This module implements some useful functions on pathnames.", "rst",
                category=("library", "Library"),
                tags={"os-path": "os.path", "posixpath": "posixpath"}),
            id="rst-module-directives-give-tags-and-rst-txt-slug",
        ),
        pytest.param(
            "guides/caching.md", CACHING,
            doc("guides/caching", "guides-caching", "Caching in practice",
                "How hot reads stay in memory.", "markdown", author=("ann-lee", "Ann Lee"),
                category=("guides", "Guides"),
                tags={"redis": "redis", "cache-aside": "Cache Aside"}),
            id="markdown-front-matter",
        ),
        pytest.param(
            "notes/first.md", "# First title\n\nSome *body* text.\n\nMore.\n",
            doc("notes/first", "notes-first", "First title", "Some body text.", "markdown",
                category=("notes", "Notes")),
            id="markdown-without-front-matter",
        ),
        pytest.param(
            "list.md", "---\n- a\n- b\n---\n# Listed\n\nText.\n",
            doc("list", "list", "Listed", "Text.", "markdown"),
            id="markdown-front-matter-not-a-mapping",
        ),
        pytest.param(
            "notes.txt", "Plain notes,\nnothing marked up.\n\nMore.\n",
            doc("notes", "notes", "notes.txt", "Plain notes, nothing marked up.", "text"),
            id="text-file-titled-by-its-name",
        ),
        pytest.param(
            "about.rst.txt", "About these documents\n=====================\n\nGenerated.\n",
            doc("about", "about", "About these documents", "Generated.", "rst"),
            id="top-level-file-has-no-category",
        ),
        pytest.param(
            "whats_new/2024/march.md", "# March\n\nNews.\n",
            doc("whats_new/2024/march", "whats-new-2024-march", "March", "News.", "markdown",
                category=("whats-new", "Whats New")),
            id="nested-folder-category-from-the-top-folder",
        ),
        pytest.param("guides/image.png", "not a document", None, id="not-a-source-file"),
        pytest.param("Makefile", "all:\n", None, id="no-suffix"),
    ],
)  # fmt: skip
def test_parse(tmp_path: Path, relative: str, source: str, expected: Document | None) -> None:
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    if expected is not None:
        expected = replace(expected, body=source)  # the source as it is, front matter included
    assert parse(tmp_path, path) == expected


@pytest.mark.parametrize(
    ("source", "entries"),
    [
        pytest.param(
            "Tutorial\n========\n\n.. toctree::\n   :numbered:\n   :maxdepth: 2\n\n"
            "   appetite.rst\n   interpreter.rst\n\nAfter.\n",
            ["appetite.rst", "interpreter.rst"],
            id="options-and-blank-lines-skipped",
        ),
        pytest.param(
            ".. toctree::\n\n   Getting started <start>\n   self\n   https://example.com\n",
            ["start"],
            id="titled-entry-self-and-links",
        ),
        pytest.param(
            ".. toctree::\n   a\n\ntext\n\n.. toctree::\n   :hidden:\n\n   b\n",
            ["a", "b"],
            id="two-toctrees-in-order",
        ),
        pytest.param("No table of contents.\n", [], id="none"),
    ],
)
def test_toctree_entries_lists_the_documents_in_order(source: str, entries: list[str]) -> None:
    assert toctree_entries(source) == entries
