"""The one filesystem layer: every exists / list / read / write / atomic replace of the library.

Paths are local (``data/demo``, ``/abs/path``), ``file://`` URIs, or object-store / cluster URIs
(``s3a://`` and ``s3://``, ``gs://``, ``hdfs://``), all served through ``pyarrow.fs``:

    fs.exists("s3a://lake/tables/catalog/_delta_log")      # same call for every scheme
    fs.write_json("s3a://lake/tables/_run.json", report)   # one PUT on a store, temp + rename locally

Atomicity differs by kind of filesystem, and the rules live here:
* a single file is replaced atomically everywhere (``rename`` locally, one object PUT on a store);
* a folder swap (``swap_link``: a symlink renamed over the old one) needs a POSIX filesystem, so
  Parquet tables on non-local URIs are refused (``require_local``); use Delta there, whose commits are
  atomic on any store.

S3 endpoints and credentials come from the standard AWS variables (``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), the same ones the
Spark side gets through ``spark.hadoop.fs.s3a.*`` (prodemb.spark).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

LOCAL_SCHEMES = ("", "file")
REMOTE_SCHEMES = ("s3a", "s3", "s3n", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def scheme(path: str | os.PathLike) -> str:
    """``"s3a"`` for ``s3a://b/k``, ``""`` for a plain path (Windows drive letters are not schemes)."""
    text = str(path)
    if text.startswith("file:"):  # file:///a and Hadoop's file:/a
        return "file"
    return text.split("://", 1)[0].lower() if "://" in text else ""


def is_local(path: str | os.PathLike) -> bool:
    """True for plain paths and ``file://`` URIs: the one "is this local" rule of the project."""
    return scheme(path) in LOCAL_SCHEMES


def local_path(path: str | os.PathLike) -> str:
    """The OS path of a local path or ``file:`` URI (``file:///a/b`` and Hadoop's ``file:/a/b`` → ``/a/b``)."""
    if not is_local(path):
        raise ValueError(f"{path} is not a local path")
    text = str(path)
    return unquote(urlparse(text).path) if text.startswith("file:") else text


def absolute(path: str | os.PathLike) -> str:
    """Local paths made absolute (what Spark executors and Feast need); URIs as given."""
    return os.path.abspath(local_path(path)) if is_local(path) else str(path)


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base/part/...`` for paths and URIs alike (no OS-specific separators in URIs)."""
    out = str(base).rstrip("/")
    for part in parts:
        out = f"{out}/{str(part).strip('/')}"
    return out


def require_local(path: str, what: str) -> str:
    """``path`` as an OS path, or a clear ValueError naming ``what`` needs a local filesystem."""
    if not is_local(path):
        raise ValueError(
            f"{path}: {what} needs a local (POSIX) filesystem; on object stores and "
            "cluster filesystems use Delta (--format delta)"
        )
    return local_path(path)


# --- the pyarrow filesystem behind a path ---------------------------------------------------------


def _s3_endpoint() -> str | None:
    """The S3 endpoint the standard variables name (the S3-specific one first), or None for AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _s3_options() -> dict[str, Any]:
    options: dict[str, Any] = {}
    endpoint = _s3_endpoint()
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    return options


@lru_cache(maxsize=None)
def _remote_fs(kind: str, authority: str):
    from pyarrow import fs as pafs

    if kind in ("s3", "s3a", "s3n"):
        return pafs.S3FileSystem(**_s3_options())
    if kind in ("gs", "gcs"):
        return pafs.GcsFileSystem()
    # hdfs:// and the other Hadoop schemes: libhdfs through pyarrow (needs HADOOP_HOME / CLASSPATH).
    return pafs.FileSystem.from_uri(f"{kind}://{authority}/")[0]


def delta_location(path: str | os.PathLike) -> tuple[str, dict[str, str]]:
    """``(table URI, storage options)`` for delta-rs, the in-process Delta reader (prodemb.tables): local
    paths absolute, ``s3a://``/``s3n://`` as ``s3://``, and the S3 endpoint of the same AWS variables
    (plain-HTTP endpoints, e.g. a store on loopback, allowed explicitly as delta-rs requires)."""
    if is_local(path):
        return os.path.abspath(local_path(path)), {}
    kind, text = scheme(path), str(path)
    if kind in ("s3a", "s3n"):
        text = "s3" + text[len(kind) :]
    options: dict[str, str] = {}
    endpoint = _s3_endpoint()
    if kind in ("s3", "s3a", "s3n") and endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return text, options


def filesystem(path: str | os.PathLike):
    """``(pyarrow FileSystem, path inside it)`` for any supported path or URI."""
    from pyarrow import fs as pafs

    if is_local(path):
        return pafs.LocalFileSystem(), os.path.abspath(local_path(path))
    kind = scheme(path)
    if kind not in REMOTE_SCHEMES:
        raise ValueError(
            f"{path}: unsupported filesystem scheme {kind!r} (local paths, file://, "
            f"{', '.join(s + '://' for s in REMOTE_SCHEMES[:6])})"
        )
    parsed = urlparse(str(path))
    inner = parsed.path.rstrip("/")
    if kind in ("s3", "s3a", "s3n", "gs", "gcs"):  # bucket/key
        return _remote_fs(kind, parsed.netloc), f"{parsed.netloc}{inner}"
    return _remote_fs(kind, parsed.netloc), inner or "/"


def _info(path: str | os.PathLike):
    fs_, inner = filesystem(path)
    return fs_.get_file_info(inner)


def exists(path: str | os.PathLike) -> bool:
    from pyarrow import fs as pafs

    return _info(path).type != pafs.FileType.NotFound


def is_dir(path: str | os.PathLike) -> bool:
    from pyarrow import fs as pafs

    return _info(path).type == pafs.FileType.Directory


def list_files(path: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Files under a folder (full paths, in the folder's own scheme), sorted; hidden and ``_``-prefixed
    names (``_SUCCESS``, ``_delta_log``, ``.crc``) and everything under them are left out."""
    from pyarrow import fs as pafs

    fs_, inner = filesystem(path)
    selector = pafs.FileSelector(inner, recursive=recursive, allow_not_found=True)
    base = str(path).rstrip("/")
    found = []
    for info in fs_.get_file_info(selector):
        rel = info.path[len(inner.rstrip("/")) + 1 :]
        if info.type == pafs.FileType.File and not any(p.startswith(("_", ".")) for p in rel.split("/")):
            found.append(f"{base}/{rel}")
    return sorted(found)


def list_dir(path: str | os.PathLike) -> list[str]:
    """Names directly inside a folder (files and folders), sorted; [] when it does not exist."""
    from pyarrow import fs as pafs

    fs_, inner = filesystem(path)
    infos = fs_.get_file_info(pafs.FileSelector(inner, recursive=False, allow_not_found=True))
    return sorted(i.base_name for i in infos)


def read_bytes(path: str | os.PathLike) -> bytes:
    fs_, inner = filesystem(path)
    with fs_.open_input_stream(inner) as fh:
        return fh.read()


def read_text(path: str | os.PathLike) -> str:
    return read_bytes(path).decode("utf-8")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(read_text(path))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace the file at ``path`` atomically: readers see the old or the new bytes, never a part."""
    from prodemb import faults

    faults.point("fs.write")  # tests: a disk that fills up, a store that refuses the write
    if is_local(path):
        with atomic_local_file(path) as tmp:
            Path(tmp).write_bytes(data)
        return
    fs_, inner = filesystem(path)
    with fs_.open_output_stream(inner) as fh:  # one object PUT: atomic on object stores
        fh.write(data)


def remove(path: str | os.PathLike) -> None:
    """Delete one file (a no-op when it is not there)."""
    fs_, inner = filesystem(path)
    if exists(path):
        fs_.delete_file(inner)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_local_file(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content into (with any tool: SentencePiece,
    matplotlib, pandas); on success it replaces ``path`` in one step, on error it is removed.

    Local targets: the temporary file sits next to the target and is renamed over it. Remote targets:
    it is written locally and uploaded in one PUT."""
    if not is_local(path):
        with tempfile.TemporaryDirectory(prefix="prodemb-upload-") as tmpdir:
            tmp = Path(tmpdir) / (Path(str(path)).name + suffix)
            yield tmp
            write_bytes(path, tmp.read_bytes())
        return
    target = Path(local_path(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)  # atomic on POSIX
    finally:
        if tmp.exists():
            tmp.unlink()


# --- folder versions: write aside, swap a symlink, prune (local filesystems only) -------------------

VERSIONS_DIR = "_versions"  # <parent>/_versions/<name>/<version>: the folders a swapped link points at
DONE = "_SUCCESS"  # in a version folder: finished (Spark writes it too)


def new_version_dir(versions: Path) -> Path:
    """A fresh, time-ordered version folder name under ``versions`` (not created)."""
    versions.mkdir(parents=True, exist_ok=True)
    return versions / (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:8])


def _writing_lock(version: Path) -> Path:
    return version.parent / f".{version.name}.writing"


@contextlib.contextmanager
def held_lock(lock: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the file ``lock`` (created if missing), waiting while another process
    holds it. The kernel drops it when the block ends or the process dies (SIGKILL included)."""
    import fcntl

    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def staging(versions: Path) -> Iterator[Path]:
    """A fresh version folder name under ``versions`` (not created) that this process is writing: it holds
    an exclusive ``flock`` on ``.<name>.writing`` beside it until the block ends, so ``prune_versions``
    of any other run leaves the folder alone. A killed writer's lock is dropped with it: its folder is
    pruned by the next write."""
    version = new_version_dir(versions)
    lock = _writing_lock(version)
    with held_lock(lock):
        try:
            yield version
        finally:  # while still held: no pruner may find the lock file unheld before it is gone
            with contextlib.suppress(OSError):
                lock.unlink()


def _writer(version: Path) -> str | None:
    """``"live"`` while a process holds the folder's writing lock (``staging``), ``"dead"`` when its lock
    file is left but nobody holds it (the writer was killed before it finished: the folder is never
    published, even if Spark's ``_SUCCESS`` is in it), None for a folder without one."""
    import fcntl

    try:
        fd = os.open(_writing_lock(version), os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "live"
    finally:
        os.close(fd)  # closing drops a lock taken here
    return "dead"


class OutputBusyError(RuntimeError):
    """Another run holds the output's lock (``output_lock``): nothing was written."""


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """One writer at a time for a stage's output: an exclusive ``flock`` on ``<parent>/.<name>.lock``, or
    OutputBusyError at once naming the holder. Released when the block ends or the process dies. Local
    outputs only: on object stores the deployment keeps one writer per table (the DAG runs one interval
    at a time; Delta's log on S3 takes a single writer)."""
    import fcntl
    import socket

    if not is_local(path):
        yield
        return
    target = Path(local_path(path)).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise OutputBusyError(
                f"another run is writing {target} ({holder}): left as it is; rerun when that run has finished"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            f"{what}, pid {os.getpid()} on {socket.gethostname()}, since "
            f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}".encode(),
            0,
        )
        yield
    finally:
        os.close(fd)  # drops the lock


_RENAME_EXCHANGE = 2  # renameat2(2) flag: swap two paths in one step (Linux 3.15+, most local filesystems)
_AT_FDCWD = -100


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap what the two paths name (a folder, a file, a symlink) in one atomic step; False where the
    kernel, the C library or the filesystem cannot (the caller then falls back to two renames)."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), f"{a} <-> {b}")


def replace_dir(new: Path, final: Path, aside: Path | None = None) -> None:
    """Put the finished folder (or symlink) ``new`` at ``final`` in one step, whatever ``final`` is now:
    nothing (a rename), or a folder or symlink (exchanged with ``new``, then the old one is moved into
    ``aside``, or deleted when ``aside`` is None). Readers of ``final`` see the old or the new content and
    never a moment without one. Where the filesystem cannot exchange, the old one is renamed away first
    (a window of one rename without ``final``)."""
    new, final = Path(new), Path(final)
    if not os.path.lexists(final):
        os.rename(new, final)
        return
    if not exchange(new, final):
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
        os.rename(new, final)
        new = old
    # ``new`` now names what was at ``final``.
    if aside is not None and new.is_dir() and not new.is_symlink():
        aside.mkdir(parents=True, exist_ok=True)
        os.rename(new, aside / ("legacy-" + uuid.uuid4().hex[:8]))
    elif new.is_dir() and not new.is_symlink():
        shutil.rmtree(new, ignore_errors=True)
    else:
        new.unlink()


def swap_link(link: Path, target: Path, aside: Path | None = None) -> None:
    """Point the symlink ``link`` at ``target`` in one atomic step. A real folder in the way (an older
    layout, a Delta table, a manual run) is exchanged with the new link and kept in ``aside`` as
    ``legacy-<id>``: readers find the old folder or the new link, never nothing."""
    tmp = link.parent / f".{link.name}.{uuid.uuid4().hex[:8]}.link"
    os.symlink(os.path.relpath(target, link.parent), tmp)
    if link.exists() and not link.is_symlink():
        replace_dir(tmp, link, aside=aside or target.parent)
        return
    os.replace(tmp, link)  # atomic on POSIX


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, keep: int = 2) -> Iterator[Path]:
    """Yield a fresh folder to write ``target``'s new content into. When the block ends without an error
    the folder is finished (``_SUCCESS``) and ``target``, a symlink, is swapped to it in one step; on an
    error (or a kill) ``target`` keeps its previous content and the folder is dropped (a killed one by the
    next successful write). The newest ``keep`` versions stay under ``<parent>/_versions/<name>/``.
    Local filesystems only."""
    link = Path(require_local(str(target), "an atomic folder replace")).absolute()
    versions = link.parent / VERSIONS_DIR / link.name
    with staging(versions) as stage:
        stage.mkdir()
        try:
            yield stage
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        (stage / DONE).touch()
        swap_link(link, stage, aside=versions)  # a plain folder from an older layout is kept aside
    prune_versions(versions, keep=keep, current=stage, done_marker=DONE)


def prune_versions(versions: Path, keep: int, current: Path, done_marker: str) -> None:
    """Keep the ``keep`` newest finished versions (those holding ``done_marker``), ``current`` always.
    Unfinished folders are dropped too: those without the marker, and those whose writer was killed
    before it published them (``staging``'s lock file left, nobody holding it); a folder another run is
    still writing is left alone.
    ``legacy-*`` folders (whatever ``swap_link`` found in the way) are never deleted."""
    folders = [p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(("legacy-", ".")) and p != current]
    writer = {p: _writer(p) for p in folders}
    done = sorted((p for p in folders if writer[p] is None and (p / done_marker).exists()), key=lambda p: p.name)
    stale = done[: max(0, len(done) + 1 - keep)]  # ``current`` is one of the ``keep``
    broken = [p for p in folders if writer[p] == "dead" or (writer[p] is None and not (p / done_marker).exists())]
    for p in stale + broken:
        shutil.rmtree(p, ignore_errors=True)
    # Lock files of killed writers: beside a folder just removed, or one Spark never got to create.
    for lock in versions.glob(".*.writing"):
        folder = versions / lock.name[1 : -len(".writing")]
        if not folder.is_dir() and _writer(folder) == "dead":
            with contextlib.suppress(OSError):
                lock.unlink()
