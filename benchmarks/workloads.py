"""The wrk Lua scripts: which request each connection sends next, and what is counted.

Every script shares one prelude: ``response()`` counts status codes, ``X-Cache`` values,
``Content-Encoding`` values and the ``detail`` parameter of ``Cache-Status`` (``l1`` for an
answer from the in-process tier; ``-`` when absent) per thread, and ``done()`` gathers them
from every thread (wrk's ``setup``/``thread:get``) and prints them with the run's figures as
``@ name value`` lines, which :mod:`benchmarks.measure` parses. Latencies are printed in
microseconds.

Request generators:

* ``zipf``: slugs drawn from a Zipfian distribution with θ = 0.99, the YCSB default (Cooper
  et al., "Benchmarking Cloud Serving Systems with YCSB", SoCC 2010). The CDF over the N slugs
  is computed once in ``init`` and each request draws a uniform number and binary-searches it.
  Rank ``r`` is line ``r`` of the slugs file, which the caller writes in a fixed pseudo-random
  permutation of the articles, so the hot keys are spread over ids (YCSB's scrambled Zipfian
  does the same with a hash);
* ``uniform``: slugs drawn uniformly from the same file;
* ``walk``: each slug once, in file order, so no slug repeats within a run (every request to
  a cold cache is a miss); the run ends when the last slug is answered or at ``-d``, whichever
  comes first. One wrk thread only: its connections share one cursor;
* ``revalidate``: Zipfian over ``slug etag`` lines, sending ``If-None-Match: etag``;
* ``fixed``: one path, again and again (a dashboard polling ``/stats``);
* ``post``: a new article per request, each with a slug of its own;
* ``patch``: a new title per request, cycling over a few slugs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

#: Counting and reporting, shared by every script.
PRELUDE = r"""
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

statuses, caches, encodings, details = {}, {}, {}, {}

local function bump(t, k)
  t[k] = (t[k] or 0) + 1
end

function response(status, headers, body)
  bump(statuses, tostring(status))
  bump(caches, headers["x-cache"] or headers["X-Cache"] or "-")
  bump(encodings, headers["content-encoding"] or headers["Content-Encoding"] or "identity")
  local cache_status = headers["cache-status"] or headers["Cache-Status"] or ""
  bump(details, cache_status:match("detail=([%w%-_.]+)") or "-")
end

local function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then table.insert(lines, line) end
  end
  assert(#lines > 0, "no lines in " .. path)
  return lines
end

local function zipf_cdf(n, theta)
  local cdf, sum = {}, 0
  for i = 1, n do
    sum = sum + 1 / (i ^ theta)
    cdf[i] = sum
  end
  for i = 1, n do cdf[i] = cdf[i] / sum end
  return cdf
end

local function zipf_rank(cdf)
  local u, lo, hi = math.random(), 1, #cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

local function merged(name)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get(name) or {}) do total[k] = (total[k] or 0) + v end
  end
  return total
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("@ requests %d\n@ duration_us %d\n", summary.requests, summary.duration))
  io.write(string.format("@ errors %d\n", e.connect + e.read + e.write + e.timeout))
  for _, p in ipairs({50, 99, 99.9}) do
    io.write(string.format("@ p%s %d\n", tostring(p), latency:percentile(p)))
  end
  for _, name in ipairs({"statuses", "caches", "encodings", "details"}) do
    for k, v in pairs(merged(name)) do io.write(string.format("@ %s:%s %d\n", name, k, v)) end
  end
end
"""


def _lua(value: object) -> str:
    """Return ``value`` (str, int, float or a dict of str) as a Lua literal."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _script(body: str, **params: object) -> str:
    consts = "".join(f"local {name} = {_lua(value)}\n" for name, value in params.items())
    return PRELUDE + consts + body


def zipf(path: str, slugs_file: str, headers: dict[str, str] | None = None) -> str:
    """Return a script sending ``GET {path}{slug}``, slugs Zipfian (θ = 0.99) over the file."""
    return _script(
        r"""
local slugs, cdf
function init(args)
  math.randomseed(4321 + 7919 * thread_index)
  slugs = read_lines(SLUGS_FILE)
  cdf = zipf_cdf(#slugs, 0.99)
end
function request()
  return wrk.format("GET", PATH .. slugs[zipf_rank(cdf)], HEADERS)
end
""",
        PATH=path,
        SLUGS_FILE=slugs_file,
        HEADERS=headers or {},
    )


def fixed(path: str) -> str:
    """Return a script sending ``GET {path}`` on every request."""
    return _script(
        r"""
function request()
  return wrk.format("GET", PATH)
end
""",
        PATH=path,
    )


def uniform(path: str, slugs_file: str) -> str:
    """Return a script sending ``GET {path}{slug}``, slugs uniform over the file."""
    return _script(
        r"""
local slugs
function init(args)
  math.randomseed(1234 + 7919 * thread_index)
  slugs = read_lines(SLUGS_FILE)
end
function request()
  return wrk.format("GET", PATH .. slugs[math.random(#slugs)])
end
""",
        PATH=path,
        SLUGS_FILE=slugs_file,
    )


def walk(
    path: str,
    slugs_file: str,
    idle_path: str,
    connections: int,
    headers: dict[str, str] | None = None,
) -> str:
    """Return a script sending ``GET {path}{slug}`` for each slug of the file once (wrk ``-t1``).

    Once every slug is sent, further requests go to ``idle_path`` (counted with ``X-Cache``
    ``-``). The run ends once every slug's answer is in: as many answers with an ``X-Cache``
    header as slugs (every cached GET of the service carries one; ``idle_path`` must not).
    Should an answer to a slug lack it, the run ends after ``1000 * connections`` idle answers
    instead (a few seconds of them). Counting idle answers alone would not do: a connection
    waiting for a slow miss sees none of them while the others answer many. The script then
    sends wrk SIGINT, which ends the run early with its summary, so the duration is the
    sweep's. wrk's ``thread:stop()`` would not do: the run would still last ``-d``.
    """
    return _script(
        r"""
local slugs, next_line, slug_answers, idle_answers, ended = nil, 1, 0, 0, false
-- wrk calls the first thread's request() once before the run, to check what it builds; that
-- call gets the idle request, so that no slug is lost.
local is_checked
function init(args)
  slugs = read_lines(SLUGS_FILE)
  is_checked = thread_index ~= 0
end
function request()
  if not is_checked or next_line > #slugs then
    is_checked = true
    return wrk.format("GET", IDLE_PATH)
  end
  local slug = slugs[next_line]
  next_line = next_line + 1
  return wrk.format("GET", PATH .. slug, HEADERS)
end
local count_response = response
function response(status, headers, body)
  count_response(status, headers, body)
  if headers["x-cache"] or headers["X-Cache"] then
    slug_answers = slug_answers + 1
  elseif next_line > #slugs then
    idle_answers = idle_answers + 1
  end
  local is_done = slug_answers >= #slugs or idle_answers >= 1000 * CONNECTIONS
  if next_line > #slugs and is_done and not ended then
    ended = true
    -- In the background: system() ignores SIGINT until its child exits.
    os.execute("(sleep 0.02; kill -INT $PPID) &")
  end
end
""",
        PATH=path,
        SLUGS_FILE=slugs_file,
        IDLE_PATH=idle_path,
        CONNECTIONS=connections,
        HEADERS=headers or {},
    )


def revalidate(path: str, etags_file: str) -> str:
    """Return a script sending ``GET`` with ``If-None-Match``, Zipfian over ``slug etag`` lines."""
    return _script(
        r"""
local slugs, etags, cdf
function init(args)
  math.randomseed(2468 + 7919 * thread_index)
  slugs, etags = {}, {}
  for _, line in ipairs(read_lines(ETAGS_FILE)) do
    local slug, etag = line:match("^(%S+) (.+)$")
    table.insert(slugs, slug)
    table.insert(etags, etag)
  end
  cdf = zipf_cdf(#slugs, 0.99)
end
function request()
  local i = zipf_rank(cdf)
  return wrk.format("GET", PATH .. slugs[i], {["If-None-Match"] = etags[i]})
end
""",
        PATH=path,
        ETAGS_FILE=etags_file,
    )


def _writer_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def post(path: str, slug_prefix: str, document: Mapping[str, object], token: str) -> str:
    """Return a script POSTing ``document`` with a new ``slug`` each time.

    Slugs are ``{slug_prefix}-{run}-{thread}-{n}``, ``run`` being the script's first argument
    (wrk ``-- run``), so that each run of the script needs a new one.
    """
    head = json.dumps(document)[:-1]
    return _script(
        r"""
local n, prefix = 0, nil
function init(args)
  prefix = SLUG_PREFIX .. "-" .. (args[1] or "0") .. "-" .. thread_index .. "-"
end
function request()
  n = n + 1
  return wrk.format("POST", PATH, HEADERS, HEAD .. ', "slug": "' .. prefix .. n .. '"}')
end
""",
        PATH=path,
        HEAD=head,
        SLUG_PREFIX=slug_prefix,
        HEADERS=_writer_headers(token),
    )


def patch(path: str, slugs: list[str], token: str) -> str:
    """Return a script PATCHing a new title into the ``slugs`` in turn."""
    return _script(
        r"""
local n = 0
function request()
  n = n + 1
  local slug = SLUGS[(n % #SLUGS) + 1]
  local body = '{"title": "Patched ' .. thread_index .. "-" .. n .. '"}'
  return wrk.format("PATCH", PATH .. slug, HEADERS, body)
end
""",
        PATH=path,
        SLUGS={i + 1: s for i, s in enumerate(slugs)},
        HEADERS=_writer_headers(token),
    )
