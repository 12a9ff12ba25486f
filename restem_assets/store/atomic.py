"""Atomic publishing: write to a temporary name beside the target, then rename into place.

Readers (DuckDB globs, the next step, another process) see either the old file or
directory or the new one, never half of one; a crash leaves only a dot-prefixed
temporary that no reader globs. Every file and model restem writes goes through here.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp-"


def is_local(fs) -> bool:
    return "file" in fs.protocol or "local" in fs.protocol


def publish_file(fs, tmp: str, final: str) -> None:
    """Move a finished temporary file over `final`.

    Local disk: an atomic rename. Object stores have no rename; a server-side copy onto
    `final` replaces the object in one step (an S3 PUT/COPY is all or nothing, readers get
    the old object or the new one, never a part), then the temporary is deleted. Never
    delete-then-move: between the two, readers would find no file at all.
    """
    if is_local(fs):
        os.replace(tmp, final)
        return
    fs.copy(tmp, final)
    fs.rm(tmp)


@contextmanager
def staged_file(fs, final: str) -> Iterator[str]:
    """A temporary path beside `final`; published on clean exit, removed on error."""
    directory = posixpath.dirname(final)
    fs.makedirs(directory, exist_ok=True)
    tmp = posixpath.join(directory, f".{posixpath.basename(final)}{TMP_MARK}{uuid.uuid4().hex}")
    try:
        yield tmp
        publish_file(fs, tmp, final)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise


def write_bytes(fs, final: str, payload: bytes) -> None:
    with staged_file(fs, final) as tmp, fs.open(tmp, "wb") as fh:
        fh.write(payload)


def replace_dir(staged: Path, final: Path) -> None:
    """Move the local directory `staged` to `final`; an existing `final` is swapped out, then deleted."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
        os.replace(final, old)
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """A fresh local directory beside `final`; it replaces `final` on clean exit and is removed on error."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{TMP_MARK}", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the published directory is an ordinary one
    try:
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


PUBLISHED_LAST = "config.json"  # a model directory without it is refused by every loader (model_cache)


def upload_dir(fs, local_dir: Path, final: str) -> None:
    """Copy a local directory to `final` on a remote filesystem (an object store: no directory rename).

    Every file is uploaded under a temporary prefix first (a crash there leaves only a
    dot-prefixed temporary), then copied server-side into `final`, file by file, with
    `config.json` last: until it lands, `final` is not a loadable model directory
    (model_cache.check_model_dir refuses it), so a reader never loads half a model. restem
    also reads a model only through the policy reported after this returns.
    """
    local_dir = Path(local_dir)
    tmp = posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}{TMP_MARK}{uuid.uuid4().hex}")
    files = sorted((p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file()),
                   key=lambda rel: (rel == PUBLISHED_LAST, rel))
    try:
        for rel in files:
            fs.put_file(str(local_dir / rel), posixpath.join(tmp, rel))
        if fs.exists(final):
            fs.rm(final, recursive=True)
        try:
            for rel in files:
                fs.copy(posixpath.join(tmp, rel), posixpath.join(final, rel))
        except BaseException:  # no half directory left under the final name
            if fs.exists(final):
                fs.rm(final, recursive=True)
            raise
    finally:
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)
