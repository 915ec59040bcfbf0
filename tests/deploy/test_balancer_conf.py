"""How the nginx configuration is rendered for the tests' replicas (``tests.deploy.balancer``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.balancer import CONF, TEMP_PATHS, render

FOLDER = Path("/tmp/cs-nginx-test")
MINIMAL = (
    "http {\n"
    "    upstream content_service {\n"
    "        server service-1:8000 max_fails=3;\n"
    "        server service-2:8000 max_fails=3;\n"
    "        keepalive 32;\n"
    "    }\n"
    "    server {\n"
    "        listen 8080;\n"
    "    }\n"
    "}\n"
)


@pytest.mark.parametrize(
    ("replicas", "servers"),
    [
        (["127.0.0.1:1"], ["server 127.0.0.1:1 max_fails=3;"]),
        (
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"],
            [f"server 127.0.0.1:{n} max_fails=3;" for n in (1, 2, 3)],
        ),
    ],
)
def test_render_puts_the_replicas_where_the_compose_ones_were(
    replicas: list[str], servers: list[str]
) -> None:
    rendered = render(MINIMAL, listen_port=9, replicas=replicas, folder=FOLDER)
    lines = [line.strip() for line in rendered.splitlines()]
    upstream = lines.index("upstream content_service {")
    assert lines[upstream + 1 : upstream + 1 + len(servers)] == servers, rendered
    assert lines[upstream + 1 + len(servers)] == "keepalive 32;", rendered
    assert "service-" not in rendered and "listen 127.0.0.1:9;" in lines, rendered
    temporary = [f"{name}_temp_path {FOLDER / name};" for name in TEMP_PATHS]
    assert lines[1 : 1 + len(TEMP_PATHS)] == temporary, rendered


@pytest.mark.parametrize(
    "text",
    [
        MINIMAL.replace("service-1:8000", "10.0.0.1:8000").replace("service-2:8000", "x:1"),
        MINIMAL.replace("listen 8080;", "listen 80;"),
        MINIMAL.replace("http {", "stream {"),
    ],
    ids=["no compose replica", "another listen port", "no http block"],
)
def test_render_refuses_a_configuration_it_cannot_place_the_replicas_in(text: str) -> None:
    with pytest.raises(ValueError, match="service-N:8000"):
        render(text, listen_port=9, replicas=["127.0.0.1:1"], folder=FOLDER)


def test_the_shipped_configuration_renders() -> None:
    rendered = render(CONF.read_text(), listen_port=9, replicas=["127.0.0.1:1"], folder=FOLDER)
    servers = re.findall(r"^\s*server\s+([^{\s]\S*)", rendered, re.M)
    assert servers == ["127.0.0.1:1"], servers
