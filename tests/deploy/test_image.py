"""The production image: built from the lock files, run unprivileged, without build tools.

The lock files are checked against pyproject.toml (scripts/lock refreshes them): every runtime
dependency pinned within its range and hashed, nothing of the ``embedded`` extra.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(lock: Path) -> dict[str, tuple[Version, int]]:
    """A lock file's packages: canonical name to (pinned version, number of hashes)."""
    found: dict[str, tuple[Version, int]] = {}
    # One entry: `name==version \` then `--hash=sha256:...` lines, then `# via` comments.
    for entry in re.split(r"\n(?=\S)", lock.read_text()):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", entry)
        if match:
            hashes = len(re.findall(r"--hash=sha256:[0-9a-f]{64}", entry))
            found[canonicalize_name(match.group(1))] = (Version(match.group(2)), hashes)
    return found


def stages() -> list[str]:
    """The Dockerfile's build stages, each from its FROM line to the next."""
    text = DOCKERFILE.read_text()
    return ["FROM" + part for part in re.split(r"^FROM", text, flags=re.M)[1:]]


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("requirements.lock", PYPROJECT["project"]["dependencies"]),
        ("requirements-build.lock", PYPROJECT["build-system"]["requires"]),
    ],
)
def test_the_lock_pins_every_requirement_within_its_range_with_hashes(
    lock: str, requirements: list[str]
) -> None:
    locked = pins(ROOT / lock)
    assert locked, f"{lock} pins nothing"
    for line in requirements:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in {lock}: run scripts/lock"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, outside {requirement.specifier}: run scripts/lock"
        )
    unhashed = sorted(name for name, (_, hashes) in locked.items() if hashes == 0)
    assert not unhashed, f"{lock} has no hashes for {unhashed}"


def test_the_runtime_lock_leaves_the_embedded_servers_out() -> None:
    locked = pins(ROOT / "requirements.lock")
    for line in PYPROJECT["project"]["optional-dependencies"]["embedded"]:
        name = canonicalize_name(Requirement(line).name)
        assert name not in locked, f"{name} (the embedded extra) is in the image's lock"


def commands(stage: str) -> list[str]:
    """The shell commands of a stage's RUN lines, continuation lines joined, split at ``&&``."""
    joined = re.sub(r"\\\n\s*", " ", stage)
    runs = re.findall(r"^RUN (.*)$", joined, flags=re.M)
    return [command.strip() for run in runs for command in run.split("&&")]


def test_the_build_stage_installs_from_the_locks_only() -> None:
    build, _ = stages()
    installs = [c for c in commands(build) if re.match(r"pip (--python \S+ )?install ", c)]
    assert len(installs) == 3, installs
    for command in installs:
        if " -r requirements" in command:
            assert "--require-hashes" in command, command
            assert "--only-binary :all:" in command, command
        else:
            # The project's own wheel: its dependencies are all in the lock already.
            assert "--no-deps" in command, command
    assert "--no-build-isolation" in build, "the build backend comes from the build lock"


def test_the_final_stage_runs_unprivileged_without_installing() -> None:
    _, final = stages()
    assert "pip install" not in final
    assert re.search(r"pip uninstall .*\bpip\b.*\bsetuptools\b", final), "the image keeps pip"
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "COPY cache" not in final and "COPY service" not in final
    user = re.search(r"^USER (\d+):(\d+)$", final, flags=re.M)
    assert user is not None, "USER must be numeric (Kubernetes runAsNonRoot checks it)"
    assert int(user.group(1)) > 0
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(user.group(1))


def test_the_image_context_leaves_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".data"} <= ignored
