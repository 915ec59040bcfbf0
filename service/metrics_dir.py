"""The folder where the workers of one instance keep their Prometheus samples.

prometheus_client's multiprocess mode is chosen when the library is first imported, from
``PROMETHEUS_MULTIPROC_DIR``: this module does not import it, so that ``serve`` can set the
variable first.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from typing import Final

#: the environment variable that turns prometheus_client's multiprocess mode on
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> str | None:
    """Make ``PROMETHEUS_MULTIPROC_DIR`` name an empty folder; return the one made, if any.

    Call it before prometheus_client is imported and before the workers start (they inherit
    the environment). An operator's folder is emptied of sample files (those of an earlier run
    would be summed in again); else a fresh temporary folder is made and exported.

    Returns:
        The folder this call created (the caller removes it with :func:`remove_multiprocess_dir`
        when the server has stopped), or None when the operator named one.

    Raises:
        OSError: the folder could not be made or emptied.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for path in glob.glob(os.path.join(given, "*.db")):
            os.remove(path)
        return None
    made = tempfile.mkdtemp(prefix="content-service-metrics-")
    os.environ[MULTIPROC_ENV] = made
    return made


def remove_multiprocess_dir(path: str) -> None:
    """Remove a folder made by :func:`prepare_multiprocess_dir` (what is missing is ignored)."""
    shutil.rmtree(path, ignore_errors=True)
