"""``content-service import PATH``: load a tree of reStructuredText or Markdown documents.

Each file becomes a published article whose slug is its path (``library/os.path.rst.txt`` is
``library-os-path``):

* title: the first section heading (Sphinx roles such as ``:mod:`os``` reduced to their text);
* author: an ``:Author:`` field (or ``author`` in Markdown front matter), else one default;
* category: the top-level folder (none for files at the top);
* tags: every ``.. module::`` directive (or ``tags`` in Markdown front matter);
* summary: the first paragraph of prose, up to 300 characters; body: the source as it is.

Importing is idempotent: an article whose slug exists is updated only if something changed,
so a second run writes nothing and invalidates nothing. The writes go through the service's
unit of work, so a running service's cache is invalidated as for any other write.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from slugify import slugify
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from service import repository as repo
from service.models import Article, Author, Category, Tag
from service.writes import ContentWriter

SUFFIXES = {".rst": "rst", ".md": "markdown", ".markdown": "markdown", ".txt": "text"}
DEFAULT_AUTHOR = ("python-docs", "Python documentation")
BATCH = 100
SUMMARY_CHARS = 300

# Inline markup, matched left to right in one pass so that a literal's text stays as it is.
_INLINE = re.compile(
    r":[\w:+.-]+:`(?P<role>[^`]*)`"
    r"|``(?P<literal>[^`]*)``"
    r"|`(?P<reference>[^`]*)`_*"
    r"|(?<![\w*])\*\*(?=\S)(?P<strong>.*?\S)\*\*(?![\w*])"
    r"|(?<![\w*])\*(?=\S)(?P<emphasis>[^*]*?\S)\*(?![\w*])"
    r"|\\(?:\s|(?P<escaped>.?))",
    re.DOTALL,
)
_EXPLICIT_TITLE = re.compile(r"(.*?)\s*<[^<>]*>", re.DOTALL)
_UNDERLINE = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
_AUTHOR = re.compile(r"^:Author:\s*(.+)$", re.MULTILINE | re.IGNORECASE)
_MODULE = re.compile(r"^\.\. (?:py:)?module::\s*(\S+)", re.MULTILINE)
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


@dataclass
class Document:
    """One parsed source file."""

    slug: str
    title: str
    summary: str
    body: str
    body_format: str
    author: tuple[str, str]
    category: tuple[str, str] | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class ImportReport:
    """What an import did: counts of files by outcome, and the files it could not read."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)


def plain(text: str) -> str:
    """Return reST inline markup reduced to its text, whitespace collapsed.

    Literals, emphasis and strong emphasis lose their markup, an escaped character its
    backslash and an escaped space all of it (as in reST). A role shows what Sphinx shows: the
    title of ``:ref:`title <target>```, the last part of ``:func:`~os.path.join``` (``join``),
    the target of ``:mod:`!os``` (``os``).
    """
    return re.sub(r"\s+", " ", _INLINE.sub(_inline_text, text)).strip()


def _inline_text(match: re.Match[str]) -> str:
    role = match.group("role")
    if role is None:
        return next((g for g in match.groups() if g is not None), "")
    if explicit := _EXPLICIT_TITLE.fullmatch(role):
        return explicit.group(1)
    role = role.removeprefix("!")
    return role[1:].rpartition(".")[2] if role.startswith("~") else role


def _format_of(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        if suffix in SUFFIXES and suffix != ".txt":
            return SUFFIXES[suffix]
    return "text" if suffixes and suffixes[-1] == ".txt" else None


def _slug_of(relative: Path) -> str:
    stem = str(relative)
    for suffix in reversed(relative.suffixes):
        if suffix.lower() in SUFFIXES:
            stem = stem[: -len(suffix)]
    return slugify(stem, max_length=200, word_boundary=True)


def _rst_title_and_rest(lines: list[str]) -> tuple[str | None, int]:
    for i in range(len(lines) - 1):
        text, under = lines[i].strip(), lines[i + 1]
        if (
            text
            and not _UNDERLINE.match(lines[i])
            and _UNDERLINE.match(under)
            and (len(under.strip()) >= len(text) - 2 or (i > 0 and _UNDERLINE.match(lines[i - 1])))
        ):
            return plain(text), i + 2
    return None, 0


def _md_title_and_rest(lines: list[str]) -> tuple[str | None, int]:
    for i, line in enumerate(lines):
        if line.startswith("# "):
            return line[2:].strip(), i + 1
    return None, 0


def _summary(lines: list[str]) -> str:
    paragraph: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            if paragraph:
                break
            continue
        if _UNDERLINE.match(line):
            paragraph = []  # what came before was a heading
            continue
        if line[0].isspace() and not paragraph:
            continue  # a directive's body or a block quote
        if stripped.startswith(("..", ":", "#", "*" * 3, "-" * 3, "=" * 3, "|", ">", "```")):
            if paragraph:
                break
            continue
        paragraph.append(stripped)
    text = plain(" ".join(paragraph))
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1].rstrip() + "…"


def _person(raw: str) -> tuple[str, str]:
    name = re.sub(r"<[^>]*>|\([^)]*\)", "", raw).strip().strip(",") or DEFAULT_AUTHOR[1]
    return slugify(name, max_length=100) or DEFAULT_AUTHOR[0], name[:200]


def parse(root: Path, path: Path) -> Document | None:
    """Return the document in ``path`` (under ``root``), or None when it is not a source file."""
    body_format = _format_of(path)
    if body_format is None:
        return None
    source = path.read_text(encoding="utf-8", errors="replace")
    relative = path.relative_to(root)
    meta: dict[str, Any] = {}
    content = source
    if body_format == "markdown" and (m := _FRONT_MATTER.match(source)):
        loaded = yaml.safe_load(m.group(1))
        meta = loaded if isinstance(loaded, dict) else {}
        content = source[m.end() :]
    lines = content.splitlines()
    title, rest = (_md_title_and_rest if body_format == "markdown" else _rst_title_and_rest)(lines)
    title = str(meta.get("title") or title or relative.name)[:500]
    author = DEFAULT_AUTHOR
    if meta.get("author"):
        author = _person(str(meta["author"]))
    elif m := _AUTHOR.search(content):
        author = _person(m.group(1))
    tags = {slugify(n, max_length=200): n[:200] for n in _MODULE.findall(content)}
    for name in meta.get("tags") or []:
        tags[slugify(str(name), max_length=200)] = str(name)[:200]
    top = relative.parts[0] if len(relative.parts) > 1 else None
    category = (slugify(top), top.replace("-", " ").replace("_", " ").title()) if top else None
    return Document(
        slug=_slug_of(relative),
        title=title,
        summary=str(meta.get("summary") or _summary(lines[rest:])),
        body=source,
        body_format=body_format,
        author=author,
        category=category,
        tags={k: v for k, v in tags.items() if k},
    )


def walk(root: Path) -> Iterator[Path]:
    """Return the files under ``root``, in a stable order."""
    yield from sorted(p for p in root.rglob("*") if p.is_file())


async def import_tree(writer: ContentWriter, root: Path) -> ImportReport:
    """Import every source file under ``root`` as a published article.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    report = ImportReport()
    docs = await asyncio.to_thread(_parse_tree, root, report)
    for start in range(0, len(docs), BATCH):
        async with writer.unit_of_work() as session:
            await _upsert(session, docs[start : start + BATCH], report)
    return report


def _parse_tree(root: Path, report: ImportReport) -> list[Document]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    docs: list[Document] = []
    for path in walk(root):
        try:
            doc = parse(root, path)
        except (OSError, UnicodeError, yaml.YAMLError) as exc:
            report.skipped.append(f"{path}: {exc}")
            continue
        if doc is not None and doc.slug:
            docs.append(doc)
    return docs


class _Rows:
    """The authors, categories and tags of one batch, each looked up or created once."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._seen: dict[tuple[Any, str], Any] = {}

    async def get_or_create(self, model: Any, key: str, **values: Any) -> Any:
        row = self._seen.get((model, key))
        if row is None:
            row = await repo.find_one(self._session, model, key)
            if row is None:
                row = model(**{model.key_name: key}, **values)
                self._session.add(row)
                await self._session.flush()
            self._seen[(model, key)] = row
        return row


async def _upsert(session: AsyncSession, docs: list[Document], report: ImportReport) -> None:
    existing = {
        a.slug: a
        for a in (
            await session.scalars(
                select(Article)
                .where(Article.slug.in_([d.slug for d in docs]))
                .options(selectinload(Article.tags))
            )
        ).all()
    }
    rows = _Rows(session)
    for doc in docs:
        username, display = doc.author
        author = await rows.get_or_create(Author, username, display_name=display)
        category = None
        if doc.category:
            slug, name = doc.category
            category = await rows.get_or_create(Category, slug, name=name)
        tags = [
            await rows.get_or_create(Tag, slug, name=name)
            for slug, name in sorted(doc.tags.items())
        ]
        values = {
            "title": doc.title,
            "summary": doc.summary,
            "body": doc.body,
            "body_format": doc.body_format,
            "author_id": author.id,
            "category_id": category.id if category else None,
        }
        article = existing.get(doc.slug)
        if article is None:
            article = Article(slug=doc.slug, status="published", published_at=func.now(), **values)
            article.tags = tags
            session.add(article)
            report.created += 1
            continue
        same = all(getattr(article, k) == v for k, v in values.items())
        if same and {t.id for t in article.tags} == {t.id for t in tags}:
            report.unchanged += 1
            continue
        for k, v in values.items():
            setattr(article, k, v)
        article.tags = tags
        article.updated_at = func.now()
        report.updated += 1
    await session.flush()
