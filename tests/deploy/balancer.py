"""deploy/nginx/nginx.conf, run by Debian's nginx in front of the test's own replicas.

The file run is the one compose mounts: :func:`render` replaces only its replica lines
(``server service-N:8000 ...;``, their parameters kept), its ``listen`` line, and adds the
temporary paths, all inside the run's own folder; it raises when one of them is not found, so
that an edit of the file cannot make the test run something else.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.servers import free_port, stop_process

NGINX = Path("/usr/sbin/nginx")
CONF = Path(__file__).parents[2] / "deploy" / "nginx" / "nginx.conf"
#: nginx's temporary folders; Debian's defaults are under /var/lib/nginx, the test's in its own.
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

_REPLICA = re.compile(
    r"^(?P<indent>[ \t]*)server[ \t]+service-\d+:8000(?P<parameters>[^;\n]*);[ \t]*\n", re.M
)
_LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen[ \t]+8080;", re.M)
_HTTP = re.compile(r"^http \{\n", re.M)
_ACCESS = re.compile(
    r'^(?P<client>\S+) \[[^\]]*\] "(?P<method>\S+) (?P<target>\S+) [^"]*" (?P<status>\d+) \d+ '
    r"request_id=(?P<request_id>\S+) upstream=(?P<upstream>.*?) "
    r"upstream_status=(?P<upstream_status>.*?) request_time="
)


def require_nginx() -> None:
    """Skip the calling test when nginx is missing, or fail when ``CI_REQUIRE_NGINX`` is set."""
    if NGINX.is_file() and os.access(NGINX, os.X_OK):
        return
    if os.environ.get("CI_REQUIRE_NGINX"):
        pytest.fail(f"CI_REQUIRE_NGINX is set but {NGINX} is missing (apt-get install nginx)")
    pytest.skip(f"{NGINX} is missing (apt-get install nginx)")


def render(text: str, *, listen_port: int, replicas: Sequence[str], folder: Path) -> str:
    """Return the configuration ``text`` for the replicas ``replicas`` (``host:port`` each).

    Every ``server service-N:8000 PARAMETERS;`` line goes; one ``server REPLICA PARAMETERS;``
    per replica takes the first one's place, with the first one's parameters. ``listen 8080;``
    becomes ``listen 127.0.0.1:{listen_port};``; the temporary paths go under ``folder``.

    Raises:
        ValueError: ``text`` has no replica line, no ``listen 8080;`` or no ``http {`` block.
    """
    lines = list(_REPLICA.finditer(text))
    if not lines or not _LISTEN.search(text) or not _HTTP.search(text):
        raise ValueError("no `server service-N:8000` line, `listen 8080;` or `http {` block")
    first = lines[0]
    servers = "".join(
        f"{first['indent']}server {replica}{first['parameters']};\n" for replica in replicas
    )
    rendered = text[: first.start()] + servers + _REPLICA.sub("", text[first.start() :])
    rendered = _LISTEN.sub(rf"\g<indent>listen 127.0.0.1:{listen_port};", rendered, count=1)
    temporary = "".join(f"    {name}_temp_path {folder / name};\n" for name in TEMP_PATHS)
    return _HTTP.sub(lambda m: m.group() + temporary, rendered, count=1)


@dataclass(frozen=True)
class AccessLine:
    """One line of nginx's access log (the configuration's ``balanced`` format).

    Attributes:
        upstreams: every replica tried, in order (``host:port``); empty when none was.
        upstream_statuses: their answers, in the same order (``502`` for a failed try).
    """

    client: str
    method: str
    target: str
    status: int
    request_id: str
    upstreams: tuple[str, ...]
    upstream_statuses: tuple[str, ...]


def _split(value: str) -> tuple[str, ...]:
    # nginx separates tries with ", " and upstream groups with " : "; "-" means none.
    return tuple(v for v in re.split(r", | : ", value) if v != "-")


@dataclass(frozen=True)
class Balancer:
    port: int
    folder: Path  # configuration, pid file, logs and temporary paths
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.folder / "access.log"

    @property
    def error_log(self) -> Path:
        return self.folder / "error.log"

    def access_lines(self) -> list[AccessLine]:
        """Return the access log's lines so far, oldest first."""
        found = []
        for line in self.access_log.read_text().splitlines():
            match = _ACCESS.match(line)
            assert match is not None, f"not a `balanced` access log line: {line!r}"
            found.append(
                AccessLine(
                    match["client"],
                    match["method"],
                    match["target"],
                    int(match["status"]),
                    match["request_id"],
                    _split(match["upstream"]),
                    _split(match["upstream_status"]),
                )
            )
        return found


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, errors: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}: {errors.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nginx does not listen on {port}: {errors.read_text()}")


@contextmanager
def balancing(replicas: Sequence[str]) -> Iterator[Balancer]:
    """Run nginx with deploy/nginx/nginx.conf over ``replicas`` (``host:port`` each); stop it after.

    Its folder is world-readable (nginx's workers run as ``nobody`` when the tests run as root)
    and removed after. Access log lines go to ``access.log`` (standard output), the error log
    to ``error.log`` (standard error).
    """
    folder = Path(tempfile.mkdtemp(prefix="cs-nginx-"))
    os.chmod(folder, 0o755)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(render(CONF.read_text(), listen_port=port, replicas=replicas, folder=folder))
    try:
        with (folder / "access.log").open("ab") as out, (folder / "error.log").open("ab") as err:
            process = subprocess.Popen(
                [str(NGINX), "-p", str(folder), "-c", str(conf),
                 "-g", f"daemon off; pid {folder / 'nginx.pid'};"],
                stdout=out,
                stderr=err,
            )  # fmt: skip
        try:
            _wait_until_listening(process, port, folder / "error.log")
            yield Balancer(port, folder, process)
        finally:
            stop_process(process)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
