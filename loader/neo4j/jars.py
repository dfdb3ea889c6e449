"""The jars of the local Neo4j server, pinned in a lock file and fetched from Maven Central
without Maven.

``jars.lock`` (beside this module, packaged in the wheel) lists every jar the server runs on:
Neo4j's runtime closure, Neo4j Browser, and the Graph Data Science plugin's closure less what
Neo4j already has (matched by group and artifact, never by file name: GDS's own
``annotations`` and ``neo4j-values`` jars share file-name stems with Neo4j's and are needed).
Each line: set (``server``, ``browser`` or ``gds``), group, artifact, version, size, sha256.

:func:`fetch` downloads what the cache lacks straight from Maven Central over HTTPS, several
files at a time, each into a ``.part`` file renamed only when its size and sha256 match the
lock: an interrupted fetch resumes, a corrupted jar is found and fetched again, and nothing
unverified is ever on the classpath. Maven is needed only by the maintainer command that
regenerates the lock when versions change::

    python -m loader.neo4j.jars lock      # resolve with mvn, hash, rewrite jars.lock
    python -m loader.neo4j.jars fetch     # what `weightgraph server start` does first
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from ..errors import WeightgraphError, one_line

NEO4J_VERSION = "5.26.30"
BROWSER_VERSION = "5.24.0"
GDS_VERSION = "2.13.9"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
# Downloads in flight: Maven Central serves each file at a few MB/s, so a handful at a time
# fill the line (214 server jars, 137 MB: ~7 s measured against ~40 s one by one).
PARALLEL_DOWNLOADS = 8
_LOCK_NAME = "jars.lock"


class JarError(WeightgraphError):
    """A jar could not be fetched or verified (the message names it and says why)."""


@dataclass(frozen=True)
class Jar:
    """One locked artifact."""

    set: str
    group: str
    artifact: str
    classifier: str  # "-" for none (native netty jars carry their platform here)
    version: str
    size: int
    sha256: str

    @property
    def _stem(self) -> str:
        tail = "" if self.classifier == "-" else f"-{self.classifier}"
        return f"{self.artifact}-{self.version}{tail}.jar"

    @property
    def file_name(self) -> str:
        return f"{self.group}__{self._stem}"

    @property
    def url_path(self) -> str:
        return f"{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self._stem}"


def read_lock(text: str | None = None) -> list[Jar]:
    """The locked jars (the packaged ``jars.lock`` unless ``text`` is given)."""
    if text is None:
        text = (files("loader.neo4j") / _LOCK_NAME).read_text(encoding="utf-8")
    jars = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, group, artifact, classifier, version, size, digest = line.split()
        jars.append(Jar(kind, group, artifact, classifier, version, int(size), digest))
    return jars


def cache_dir() -> Path:
    """Where verified jars are kept: ``$WEIGHTGRAPH_NEO4J_CACHE`` or ``~/.cache/weightgraph``,
    then ``jars/`` (one flat folder: file names carry the group, so nothing collides)."""
    base = os.environ.get("WEIGHTGRAPH_NEO4J_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "weightgraph")
    return Path(base) / "jars"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verified(jar: Jar, path: Path) -> bool:
    return path.is_file() and path.stat().st_size == jar.size and _sha256(path) == jar.sha256


def missing(jars: list[Jar], directory: Path | None = None) -> list[Jar]:
    """The jars the cache does not hold verified (size and sha256 as locked)."""
    directory = directory or cache_dir()
    return [j for j in jars if not _verified(j, directory / j.file_name)]


def fetch(sets: tuple[str, ...] = ("server", "browser", "gds"), *, directory: Path | None = None,
          repository: str | None = None, progress: bool = True,
          jars: list[Jar] | None = None) -> list[Path]:
    """Make every locked jar of ``sets`` (or the given ``jars``) present and verified in the
    cache; return their paths.

    Raises
    ------
    JarError
        One line naming the first jar that could not be fetched or does not match its lock
        (an unreachable repository, a changed file).
    """
    from ..terminal import human, progress as progress_bar

    directory = directory or cache_dir()
    repository = (repository or os.environ.get("WEIGHTGRAPH_MAVEN_REPOSITORY")
                  or MAVEN_CENTRAL).rstrip("/")
    wanted = jars if jars is not None else [j for j in read_lock() if j.set in sets]
    todo = missing(wanted, directory)
    if todo:
        directory.mkdir(parents=True, exist_ok=True)
        total = sum(j.size for j in todo)
        print(f"weightgraph: fetching {len(todo)} jars ({human(total)}) from {repository} "
              f"into {directory}", file=sys.stderr)
        with progress_bar(total, "jars", enabled=progress, unit="B") as bar, \
                ThreadPoolExecutor(PARALLEL_DOWNLOADS) as pool:
            for _ in pool.map(lambda j: _download(j, directory, repository, bar.update), todo):
                pass
    return [directory / j.file_name for j in wanted]


def _download(jar: Jar, directory: Path, repository: str, advance) -> None:
    url = f"{repository}/{jar.url_path}"
    part = directory / (jar.file_name + f".{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        raise JarError(f"cannot fetch {jar.group}:{jar.artifact}:{jar.version} from "
                       f"{repository} ({one_line(exc)}): Neo4j's jars are needed once, from "
                       "Maven Central (or WEIGHTGRAPH_MAVEN_REPOSITORY)") from None
    if not _verified(jar, part):
        part.unlink(missing_ok=True)
        raise JarError(f"{jar.group}:{jar.artifact}:{jar.version} from {repository} does not "
                       f"match its sha256 in {_LOCK_NAME}: refusing it")
    os.replace(part, directory / jar.file_name)
    advance(jar.size)


# ---------------------------------------------------------------------------- maintainer
_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.weightgraph</groupId>
  <artifactId>lock-{name}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""
# Test libraries Neo4j's pom lists without a scope, and the GenAI plugin (the tarball keeps it
# out of lib/).
_NEO4J_EXCLUSIONS = [("org.junit.jupiter", "*"), ("org.junit.platform", "*"),
                     ("org.assertj", "*"), ("org.mockito", "*"),
                     ("org.neo4j", "neo4j-genai-plugin")]


def _dependency(group, artifact, version, exclusions=()) -> str:
    ex = "".join(f"<exclusion><groupId>{g}</groupId><artifactId>{a}</artifactId></exclusion>"
                 for g, a in exclusions)
    return (f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version><exclusions>{ex}</exclusions></dependency>")


def _resolve(name: str, dependencies: list[str], work: Path) -> list[tuple]:
    """(group, artifact, classifier, version, file) of the runtime closure, by Maven."""
    pom = work / f"{name}.xml"
    pom.write_text(_POM.format(name=name, dependencies="\n".join(dependencies)))
    listing = work / f"{name}.txt"
    subprocess.run(["mvn", "-B", "-q", "-f", str(pom), "dependency:list",
                    "-DincludeScope=runtime", "-DoutputAbsoluteArtifactFilename=true",
                    f"-DoutputFile={listing}"], check=True)
    out = []
    for line in listing.read_text().splitlines():
        # group:artifact:type[:classifier]:version:scope:/absolute/path[ -- module ...]
        head, sep, path = line.strip().partition(":/")
        parts = head.split(":")
        if not sep or len(parts) not in (5, 6) or parts[2] != "jar":
            continue
        group, artifact = parts[0], parts[1]
        classifier = parts[3] if len(parts) == 6 else "-"
        version = parts[-2]
        out.append((group, artifact, classifier, version,
                    Path("/" + path.split(" -- ")[0].strip())))
    return out


def write_lock(path: Path) -> int:
    """Resolve the closures with Maven and write the lock; returns the number of jars."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = _resolve("server", [
            _dependency("org.neo4j", "neo4j", NEO4J_VERSION, _NEO4J_EXCLUSIONS)], work)
        browser = _resolve("browser", [
            _dependency("org.neo4j.client", "neo4j-browser", BROWSER_VERSION)], work)
        gds = _resolve("gds", [_dependency("org.neo4j.gds", a, GDS_VERSION)
                               for a in ("proc", "opengds-extension", "proc-sysinfo")], work)
    in_server = {(r[0], r[1], r[2]) for r in server}
    rows = [("server", *r) for r in server]
    rows += [("browser", *r) for r in browser if (r[0], r[1], r[2]) not in in_server]
    # GDS shares third-party jars with Neo4j (jackson, caffeine, ...): Neo4j's versions serve
    # (verified by hand, see NEO4J-LOCAL.md); matched by group and artifact, not file name.
    have = {(r[0], r[1], r[2]) for r in server + browser}
    rows += [("gds", *r) for r in gds if (r[0], r[1], r[2]) not in have]
    lines = [f"# Generated by `python -m loader.neo4j.jars lock` (Neo4j {NEO4J_VERSION}, "
             f"Browser {BROWSER_VERSION}, GDS {GDS_VERSION}): do not edit by hand.",
             "# set group artifact classifier version size sha256"]
    for kind, group, artifact, classifier, version, file in sorted(rows):
        lines.append(f"{kind} {group} {artifact} {classifier} {version} "
                     f"{file.stat().st_size} {_sha256(file)}")
    path.write_text("\n".join(lines) + "\n")
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loader.neo4j.jars",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fetch", "lock", "check"])
    args = parser.parse_args(argv)
    try:
        if args.command == "lock":
            target = Path(__file__).with_name(_LOCK_NAME)
            print(f"{write_lock(target)} jars locked in {target}")
        elif args.command == "check":
            bad = missing(read_lock())
            print(f"{len(bad)} of {len(read_lock())} jars missing or unverified in "
                  f"{cache_dir()}")
            return 1 if bad else 0
        else:
            paths = fetch()
            print(f"{len(paths)} jars verified in {cache_dir()}")
    except WeightgraphError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
