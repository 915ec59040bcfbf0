"""``content-service import PATH``: load a tree of reStructuredText or Markdown documents.

Each file becomes a published article whose slug is its path (``library/os.path.rst.txt`` is
``library-os-path``):

* title: the first section heading (Sphinx roles such as ``:mod:`os``` reduced to their text);
* author: an ``:Author:`` field (or ``author`` in Markdown front matter), else one default;
* category: the top-level folder (none for files at the top);
* tags: every ``.. module::`` directive (or ``tags`` in Markdown front matter);
* summary: the first paragraph of prose, up to 300 characters; body: the source as it is;
* series: a folder whose index document (``index.rst``, ``index.rst.txt``, ...) has a
  ``.. toctree::`` is a guide: the documents of that folder its toctree lists form a series
  (named by the index's title), in the toctree's order.

Importing is idempotent: an article whose slug exists is updated only if something changed,
so a second run writes nothing and invalidates nothing. The writes go through the service's
unit of work, so a running service's cache is invalidated as for any other write.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from slugify import slugify
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from service import repository as repo
from service.kinds import AUTHOR, CATEGORY, SERIES, TAG, EntityKind
from service.models import Article, Base, Tag
from service.unit_of_work import UnitOfWork

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
_TOCTREE = re.compile(r"^\.\. toctree::[^\n]*\n((?:[ \t]+[^\n]*\n|[ \t]*\n)*)", re.MULTILINE)
_TOCTREE_TARGET = re.compile(r"<([^<>]+)>\s*$")


@dataclass
class Document:
    """One parsed source file."""

    #: Its path under the root, without its source suffixes (``tutorial/appetite``).
    stem: str
    slug: str
    title: str
    summary: str
    body: str
    body_format: str
    author: tuple[str, str]
    category: tuple[str, str] | None
    tags: dict[str, str] = field(default_factory=dict)
    #: The guide it is a chapter of, (slug, name), and its place in it (1 first).
    series: tuple[str, str] | None = None
    position: int | None = None


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


def _stem_of(relative: Path) -> str:
    stem = relative.as_posix()
    for suffix in reversed(relative.suffixes):
        if suffix.lower() in SUFFIXES:
            stem = stem[: -len(suffix)]
    return stem


def _slug_of(relative: Path) -> str:
    return slugify(_stem_of(relative), max_length=200, word_boundary=True)


def toctree_entries(source: str) -> list[str]:
    """Return the documents the ``.. toctree::`` directives of a reST source list, in order.

    Options (``:maxdepth: 2``) and blank lines are skipped; an entry ``Title <target>`` gives
    its target; suffixes are kept as written (``appetite.rst`` or ``appetite``); external
    links (``https://...``) and ``self`` are left out.
    """
    entries: list[str] = []
    for block in _TOCTREE.findall(source):
        for line in block.splitlines():
            entry = line.strip()
            if not entry or entry.startswith(":") or entry.startswith(".."):
                continue
            if m := _TOCTREE_TARGET.search(entry):
                entry = m.group(1).strip()
            if entry == "self" or "://" in entry:
                continue
            entries.append(entry)
    return entries


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
        stem=_stem_of(relative),
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


async def import_tree(unit_of_work: UnitOfWork, root: Path) -> ImportReport:
    """Import every source file under ``root`` as a published article.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    report = ImportReport()
    docs = await asyncio.to_thread(_parse_tree, root, report)
    for start in range(0, len(docs), BATCH):
        async with unit_of_work() as session:
            await _upsert(session, docs[start : start + BATCH], report)
    return report


def _parse_tree(root: Path, report: ImportReport) -> list[Document]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    docs: list[Document] = []
    stems: dict[str, Document] = {}
    for path in walk(root):
        try:
            doc = parse(root, path)
        except (OSError, UnicodeError, yaml.YAMLError) as exc:
            report.skipped.append(f"{path}: {exc}")
            continue
        if doc is not None and doc.slug:
            docs.append(doc)
            stems[_stem_of(path.relative_to(root))] = doc
    for index in [d for stem, d in stems.items() if stem.rsplit("/", 1)[-1] == "index"]:
        _place_in_series(index, stems)
    return docs


def _place_in_series(index: Document, stems: dict[str, Document]) -> None:
    """Make the documents the index's toctree lists in its own folder a series, in order."""
    folder = index.stem.rsplit("/", 1)[0] if "/" in index.stem else ""
    if not folder:
        return
    chapters: list[Document] = []
    for entry in toctree_entries(index.body):
        target = posixpath.normpath(posixpath.join(folder, entry))
        doc = stems.get(_stem_of(Path(target)))
        in_folder = posixpath.dirname(target) == folder
        if doc is not None and doc is not index and in_folder and doc.series is None:
            doc.series = ("", "")  # taken: a document listed twice keeps its first place
            chapters.append(doc)
    if not chapters:
        return
    series = (slugify(folder, max_length=200), index.title[:200])
    for position, doc in enumerate(chapters, 1):
        doc.series, doc.position = series, position


class _Rows:
    """The entities one batch refers to, each looked up or created once."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._seen: dict[tuple[str, str], Base] = {}

    async def get_or_create(self, kind: EntityKind, key: str, **values: str) -> Base:
        row = self._seen.get((kind.name, key))
        if row is None:
            row = await repo.find_one(self._session, kind, key)
            if row is None:
                row = kind.new(**{kind.key: key}, **values)
                self._session.add(row)
                await self._session.flush()
            self._seen[(kind.name, key)] = row
        return row

    async def id_of(self, kind: EntityKind, named: tuple[str, str] | None) -> int | None:
        """Return the id of the entity ``named`` (key, name), created when new; None for none."""
        if named is None:
            return None
        key, name = named
        row = await self.get_or_create(kind, key, **{kind.name_column: name})
        entity_id: int = getattr(row, "id")  # noqa: B009 (every entity has one; Base does not)
        return entity_id


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
        tags = [
            cast(Tag, await rows.get_or_create(TAG, slug, name=name))
            for slug, name in sorted(doc.tags.items())
        ]
        values: dict[str, Any] = {
            "title": doc.title,
            "summary": doc.summary,
            "body": doc.body,
            "body_format": doc.body_format,
            "author_id": await rows.id_of(AUTHOR, doc.author),
            "category_id": await rows.id_of(CATEGORY, doc.category),
            "series_id": await rows.id_of(SERIES, doc.series),
            "series_position": doc.position,
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
