"""Policies: the model each iteration samples from, named the same way everywhere.

policy[0] is the base model, policy[i] the fine-tune of iteration i. Samples,
evaluations and the fine-tune's `init_from` all carry these ids.

Where a policy's model lies is recorded relative to the data root when it lies under it
(`models/iteration=1/version=<run>`, what `finetune` writes): a data root copied or moved
together with its instance then reads its own models, and a missing or damaged copy fails
loudly instead of the original being read. A model elsewhere (the embedded base model in the
model cache, a user's directory or URL) is recorded as an absolute path or URL, as are all
records written before this rule; those load as they always did.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Policy:
    """The model that produced a sample: "base" or the fine-tune of an iteration."""

    policy_id: str
    path: str
    version: str = ""  # which materialization of this policy (the producing run); paths are per version


class PolicyNotFoundError(RuntimeError):
    """A policy that something needs was never produced, or its model is gone from the data root
    (restem never falls back to another model)."""


def policy_id(iteration: int) -> str:
    return "base" if iteration == 0 else f"iteration={iteration}"


def init_policy_iteration(init_from: str, iteration: int) -> int:
    """Which policy the M-step of `iteration` starts from: the base model (paper) or the previous iterate."""
    if init_from == "base":
        return 0
    if init_from == "previous":
        return iteration - 1
    raise ValueError(f"init_from must be 'base' or 'previous', got {init_from!r}")


def directory_fingerprint(path: str) -> str:
    """A short id of a model directory's files (names, sizes, modification times): the base model's
    version, unchanged when set-up runs again over the same files."""
    digest = hashlib.sha256(os.path.abspath(path).encode())
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            digest.update(f"{os.path.relpath(os.path.join(root, name), path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def _split_location(location: str) -> tuple[str, str]:
    """(protocol, path) of a local path or fsspec URL; local paths (and file:// URLs) made absolute and
    normalized, other URLs' paths without leading slashes (`memory:///b/x` and `memory://b/x` agree)."""
    protocol, sep, rest = location.partition("://")
    if not sep:
        protocol, rest = "file", location
    if protocol in ("file", "local"):
        return "file", os.path.normpath(os.path.abspath(os.path.expanduser(rest)))
    return protocol, posixpath.normpath("/" + rest).lstrip("/")


def is_relative_location(recorded: str) -> bool:
    """Whether a recorded policy location is relative to the data root (neither an absolute path nor a URL)."""
    return "://" not in recorded and not os.path.isabs(recorded) and not recorded.startswith("~")


def policy_location(path: str, data_root: str) -> str:
    """How to record the model at `path` (a local path or URL): relative to `data_root` (a POSIX path such
    as `models/iteration=1/version=abc`) when it lies under it, else `path` itself (local paths made absolute)."""
    protocol, full = _split_location(path)
    root_protocol, root = _split_location(data_root)
    if protocol == root_protocol:
        rel = posixpath.relpath(full, root or ".")
        if rel not in (".", "..") and not rel.startswith("../"):
            return rel
    return path if "://" in path else full


def resolve_location(recorded: str, data_root: str) -> str:
    """The model a recorded location names: a relative one under `data_root` (as a URL, the form
    `ParquetStore.url` gives: `file:///...` for a local root), an absolute path or URL as recorded."""
    if not is_relative_location(recorded):
        return recorded
    protocol, root = _split_location(data_root)
    if protocol == "file":
        return "file://" + posixpath.join(root, recorded)
    return f"{protocol}://{posixpath.join(root, recorded)}"


def check_policy_model(resolved: str, what: str) -> None:
    """Fail naming `what` and `resolved` when the model directory is missing (PolicyNotFoundError) or, on
    local disk, lacks its config, weights or tokenizer (model_cache.ModelDirError)."""
    from restem_assets.models.model_cache import check_model_dir

    protocol, path = _split_location(resolved)
    if protocol == "file":
        if not os.path.isdir(path):
            raise PolicyNotFoundError(f"{what}: its model directory {path} does not exist "
                                      "(restem never falls back to another model)")
        check_model_dir(Path(path), f"{what}: model directory {path}")
        return
    from fsspec.core import url_to_fs

    fs, fs_path = url_to_fs(resolved)
    if not fs.exists(fs_path):
        raise PolicyNotFoundError(f"{what}: its model {resolved} does not exist "
                                  "(restem never falls back to another model)")
