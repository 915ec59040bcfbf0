"""A locust scenario of the content service: Zipf-popular article reads, lists, search, writes.

Run it against any deployment (see the README's "Load test" section)::

    locust -f loadtest/locustfile.py --headless -u 64 -r 16 -t 60s --host URL --csv report

Each simulated user repeats one step, drawn with the user's own seeded ``random.Random`` from
the mix ``LOADTEST_MIX`` (default ``read=60,revalidate=20,list=12,search=7,write=1``):

- ``read``: ``GET /api/v1/articles/{slug}``, the slug drawn from a YCSB Zipfian over the known
  articles (theta ``LOADTEST_ZIPF_THETA``, 0.99); ranks map to slugs through a permutation
  seeded by ``LOADTEST_SEED``, as YCSB's scrambled Zipfian does, so the popular articles are
  not all on the first list page. The user remembers the answer's ``ETag``.
- ``revalidate``: the same draw, sent with ``If-None-Match`` when the user has the ETag (304
  expected; a 200 means the article changed); a plain read otherwise.
- ``list``: ``/api/v1/articles?page=N`` (N Zipfian over the first ``LOADTEST_MAX_PAGE``
  pages) half of the time, else ``/api/v1/authors``, ``/tags`` or ``/categories?page=N``.
- ``search``: ``/api/v1/articles?q=word``, the word Zipfian over ``LOADTEST_SEARCH_WORDS``.
- ``write``: only with ``LOADTEST_TOKEN`` set (else left out of the mix): a PATCH that toggles
  an ``" (edited)"`` suffix on the title of a Zipf-drawn article the user has read, or a POST
  of a new published article whose slug starts with ``loadtest-``. Writes change the target's
  content: point them at a deployment whose data may change.

The slugs are ``LOADTEST_SLUGS`` (comma-separated), else the lines of ``LOADTEST_SLUGS_FILE``,
else discovered when the test starts by paging through ``GET /api/v1/articles?per_page=100``
up to ``LOADTEST_ARTICLES`` (default 2000) slugs. Discovery requests are not in the report.

Every answer's ``X-Cache`` header (``HIT``, ``MISS``, ``STALE``, ``BYPASS``; ``-`` when absent)
is counted per request name; the mix, with the mean response time of each cache state, is
printed after locust's own tables and, with ``--csv PREFIX``, written to
``PREFIX_xcache.csv``. With ``--master``/``--worker`` the workers send their counts to the
master with their stats reports.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import sys
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent
from cache_mix import CacheMix
from catalog import TAXONOMIES, Catalog, discover
from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner
from zipfian import YCSB_THETA, ZipfianGenerator

logger = logging.getLogger("loadtest")

ARTICLE = "/api/v1/articles/[slug]"
REVALIDATE = "/api/v1/articles/[slug] (If-None-Match)"
ARTICLE_PAGE = "/api/v1/articles?page=[n]"
SEARCH = "/api/v1/articles?q=[word]"
CREATE = "/api/v1/articles"
DEFAULT_MIX = "read=60,revalidate=20,list=12,search=7,write=1"
DEFAULT_WORDS = "cache,redis,postgres,latency,query,index,pool,stream,async,schema"
EDITED = " (edited)"


@dataclass(frozen=True)
class Config:
    """The scenario's settings, read from ``LOADTEST_*`` environment variables."""

    token: str | None
    articles: int
    slugs: tuple[str, ...]
    theta: float
    seed: int
    mix: dict[str, float]
    words: tuple[str, ...]
    author: str | None
    max_page: int
    wait_ms: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        """Read the settings; writes leave the mix when no token is set.

        Raises:
            ValueError: a variable is malformed, or the mix names an unknown step.
            OSError: ``LOADTEST_SLUGS_FILE`` cannot be read.
        """
        slugs: list[str] = []
        if env.get("LOADTEST_SLUGS"):
            slugs = [s.strip() for s in env["LOADTEST_SLUGS"].split(",")]
        elif env.get("LOADTEST_SLUGS_FILE"):
            with open(env["LOADTEST_SLUGS_FILE"], encoding="utf-8") as lines:
                slugs = [line.strip() for line in lines]
        mix: dict[str, float] = {}
        for part in env.get("LOADTEST_MIX", DEFAULT_MIX).split(","):
            step, _, weight = part.partition("=")
            if step.strip() not in STEPS:
                raise ValueError(f"LOADTEST_MIX: unknown step {step!r}; known: {sorted(STEPS)}")
            mix[step.strip()] = float(weight)
        token = env.get("LOADTEST_TOKEN") or None
        if token is None:
            mix.pop("write", None)
        mix = {step: weight for step, weight in mix.items() if weight > 0}
        if not mix:
            raise ValueError("LOADTEST_MIX: no step has a positive weight")
        theta = float(env.get("LOADTEST_ZIPF_THETA", str(YCSB_THETA)))
        if not 0.0 < theta < 1.0:
            raise ValueError(f"LOADTEST_ZIPF_THETA must be in (0, 1), got {theta}")
        words = [w.strip() for w in env.get("LOADTEST_SEARCH_WORDS", DEFAULT_WORDS).split(",")]
        if not any(words):
            raise ValueError("LOADTEST_SEARCH_WORDS: no word")
        return cls(
            token=token,
            articles=int(env.get("LOADTEST_ARTICLES", "2000")),
            slugs=tuple(s for s in slugs if s),
            theta=theta,
            seed=int(env.get("LOADTEST_SEED", "1")),
            mix=mix,
            words=tuple(w for w in words if w),
            author=env.get("LOADTEST_AUTHOR") or None,
            max_page=int(env.get("LOADTEST_MAX_PAGE", "50")),
            wait_ms=float(env.get("LOADTEST_WAIT_MS", "0")),
        )


@dataclass
class LoadTestRun:
    """One locust process's share of the run: settings, catalog, cache mix, user numbering."""

    environment: Environment
    config: Config
    catalog: Catalog | None = None
    mix: CacheMix = field(default_factory=CacheMix)
    user_numbers: itertools.count[int] = field(default_factory=itertools.count)
    tag: str = field(default_factory=lambda: f"{int(time.time()):x}")


_run: LoadTestRun | None = None


class ContentReader(FastHttpUser):
    """A client of the content service: reads what is popular, revalidates, lists, searches."""

    def on_start(self) -> None:
        """Seed this user's draws; stop it when the catalog could not be built."""
        if _run is None or _run.catalog is None:
            raise StopUser()
        self.shared, self.catalog, config = _run, _run.catalog, _run.config
        worker = getattr(self.environment.runner, "worker_index", 0)
        self.number = next(self.shared.user_numbers)
        self.rng = random.Random(config.seed * 1_000_003 + worker * 10_007 + self.number)
        self.articles = ZipfianGenerator(len(self.catalog.slugs), config.theta, self.rng)
        pages = min(self.catalog.pages["articles"], config.max_page)
        self.pages = ZipfianGenerator(pages, config.theta, self.rng)
        self.words = ZipfianGenerator(len(config.words), config.theta, self.rng)
        self.steps = list(config.mix)
        self.weights = list(itertools.accumulate(config.mix.values()))
        self.etags: dict[str, str] = {}
        self.titles: dict[str, str] = {}
        self.posted = 0

    def wait_time(self) -> float:
        """Think time between steps, seconds: uniform up to ``LOADTEST_WAIT_MS``."""
        return self.rng.uniform(0, self.shared.config.wait_ms) / 1000

    @task
    def step(self) -> None:
        """Take one step of the mix."""
        (step,) = self.rng.choices(self.steps, cum_weights=self.weights)
        STEPS[step](self)

    def _slug(self) -> str:
        return self.catalog.slugs[self.articles.next()]

    def _get(self, path: str, name: str, headers: dict[str, str] | None = None) -> Any:
        return self.client.get(path, name=name, headers=headers, catch_response=True)

    def read(self, slug: str | None = None) -> None:
        """GET one article; remember its ETag (and its title, when writes are on)."""
        slug = slug or self._slug()
        with self._get(f"/api/v1/articles/{slug}", ARTICLE) as answer:
            if _expect(answer, 200):
                self._remember(slug, answer)

    def revalidate(self) -> None:
        """GET an article with ``If-None-Match`` when its ETag is known; a plain read otherwise."""
        slug = self._slug()
        etag = self.etags.get(slug)
        if etag is None:
            self.read(slug)
            return
        path = f"/api/v1/articles/{slug}"
        with self._get(path, REVALIDATE, {"If-None-Match": etag}) as answer:
            if _expect(answer, 304, 200) and answer.status_code == 200:
                self._remember(slug, answer)

    def list_page(self) -> None:
        """GET a page of articles (half the time) or of a taxonomy."""
        if self.rng.random() < 0.5:
            with self._get(f"/api/v1/articles?page={self.pages.next() + 1}", ARTICLE_PAGE) as a:
                _expect(a, 200)
            return
        kind = self.rng.choice(TAXONOMIES)
        page = self.rng.randint(1, self.catalog.pages[kind])
        with self._get(f"/api/v1/{kind}?page={page}", f"/api/v1/{kind}?page=[n]") as answer:
            _expect(answer, 200)

    def search(self) -> None:
        """GET a page of full-text search results."""
        word = self.shared.config.words[self.words.next()]
        with self._get(f"/api/v1/articles?q={urllib.parse.quote(word)}", SEARCH) as answer:
            _expect(answer, 200)

    def write(self) -> None:
        """PATCH the title of an article this user has read, or POST a new article."""
        headers = {"Authorization": f"Bearer {self.shared.config.token}"}
        slug = self._slug()
        title = self.titles.get(slug)
        if title is not None and self.rng.random() < 0.5:
            new = title.removesuffix(EDITED) if title.endswith(EDITED) else title + EDITED
            with self.client.patch(
                f"/api/v1/articles/{slug}",
                json={"title": new},
                headers=headers,
                name=ARTICLE,
                catch_response=True,
            ) as answer:
                if _expect(answer, 200):
                    self.titles[slug] = new
            return
        if self.catalog.author is None:
            return
        self.posted += 1
        number = f"{self.shared.tag}-{self.number}-{self.posted}"
        document = {
            "slug": f"loadtest-{number}",
            "title": f"Load test article {number}",
            "summary": "Posted by the load test.",
            "body": "A new article, posted to measure the cost of a write and its invalidation.",
            "status": "published",
            "author": self.catalog.author,
        }
        with self.client.post(
            CREATE, json=document, headers=headers, name=CREATE, catch_response=True
        ) as answer:
            _expect(answer, 201)

    def _remember(self, slug: str, answer: Any) -> None:
        etag = answer.headers.get("ETag")
        if etag:
            self.etags[slug] = etag
        if self.shared.config.token is not None:
            self.titles[slug] = answer.json()["title"]


STEPS = {
    "read": ContentReader.read,
    "revalidate": ContentReader.revalidate,
    "list": ContentReader.list_page,
    "search": ContentReader.search,
    "write": ContentReader.write,
}


def _expect(answer: Any, *statuses: int) -> bool:
    """Mark ``answer`` a success when its status is one of ``statuses``, else a failure."""
    if answer.status_code in statuses:
        answer.success()
        return True
    answer.failure(f"status {answer.status_code}: {(answer.text or '')[:200]}")
    return False


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    """Read the settings once per process; exit at once when they are wrong."""
    global _run
    try:
        _run = LoadTestRun(environment, Config.from_env())
    except (ValueError, OSError) as exc:
        sys.exit(f"load test settings: {exc}")


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    """Build the catalog from the target (not on a master, which sends no request)."""
    if _run is None or isinstance(environment.runner, MasterRunner):
        return
    if not environment.host:
        logger.error("no target: pass --host http://... (the service's base URL)")
        environment.process_exit_code = 1
        gevent.spawn(environment.runner.quit)
        return
    try:
        config = _run.config
        _run.catalog = discover(
            environment.host,
            max_articles=config.articles,
            slugs=config.slugs,
            seed=config.seed,
            author=config.author,
        )
    except (OSError, ValueError, KeyError) as exc:
        logger.error("could not read the target's lists at %s: %s", environment.host, exc)
        environment.process_exit_code = 1
        gevent.spawn(environment.runner.quit)
        return
    logger.info(
        "%d articles (Zipf theta %.2f, seed %d), step mix %s%s",
        len(_run.catalog.slugs),
        _run.config.theta,
        _run.config.seed,
        _run.config.mix,
        "" if _run.config.token else " (no LOADTEST_TOKEN: no writes)",
    )


@events.request.add_listener
def on_request(
    request_type: str, name: str, response_time: float, response: Any = None, **_: Any
) -> None:
    """Count the ``X-Cache`` header of every GET answer."""
    if _run is None or request_type != "GET" or response is None:
        return
    headers = getattr(response, "headers", None)
    state = (headers.get("X-Cache") if headers else None) or "-"
    _run.mix.add(name, state, getattr(response, "status_code", 0) or 0, response_time)


@events.report_to_master.add_listener
def on_report_to_master(data: dict[str, Any], **_: Any) -> None:
    """Send this worker's counts with its stats report."""
    if _run is not None:
        data["x_cache"] = _run.mix.drain()


@events.worker_report.add_listener
def on_worker_report(data: dict[str, Any], **_: Any) -> None:
    """Add a worker's counts to the master's."""
    if _run is not None:
        _run.mix.merge(data.get("x_cache", {}))


@events.quit.add_listener
def on_quit(**_: Any) -> None:
    """Print the ``X-Cache`` mix after locust's tables; write it beside ``--csv`` files."""
    if _run is None or isinstance(_run.environment.runner, WorkerRunner) or not _run.mix.rows():
        return
    options = _run.environment.parsed_options
    out = sys.stderr if options is not None and getattr(options, "json", False) else sys.stdout
    print(_run.mix.render(), file=out, flush=True)
    prefix = getattr(options, "csv_prefix", None) if options is not None else None
    if prefix:
        _run.mix.write_csv(f"{prefix}_xcache.csv")
