"""Policies: the model each iteration samples from, named the same way everywhere.

policy[0] is the base model, policy[i] the fine-tune of iteration i. Samples,
evaluations and the fine-tune's `init_from` all carry these ids.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    """The model that produced a sample: "base" or the fine-tune of an iteration."""

    policy_id: str
    path: str
    version: str = ""  # which materialization of this policy (the producing run); paths are per version


class PolicyNotFoundError(RuntimeError):
    """A policy that something needs was never produced (restem never falls back to another model)."""


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
