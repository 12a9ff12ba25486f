"""Named run profiles: the full default, and smaller ones for CI and tests.

A profile only changes defaults; any field can still be overridden in run config
or the webserver's launchpad. Select with RESTEM_PROFILE.
"""

from __future__ import annotations

import os
from typing import Any

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    # The README's main command: 256 train / 128 test easy chain sums.
    "default": {
        "task": {"train_size": 256, "test_size": 128},
        "rest": {"samples_per_problem": 8, "max_new_tokens": 96, "eval_samples": 4, "eval_max_new_tokens": 96},
    },
    # CI: the whole loop end to end in a few minutes.
    "ci": {
        "task": {"train_size": 48, "test_size": 24},
        "rest": {"samples_per_problem": 4, "max_new_tokens": 48, "eval_samples": 2, "eval_max_new_tokens": 48,
                 "finetune_max_steps": 2},
    },
    # Unit/e2e tests: seconds per stage.
    "tiny": {
        "task": {"train_size": 6, "test_size": 4},
        "rest": {"samples_per_problem": 2, "max_new_tokens": 16, "eval_samples": 2, "eval_max_new_tokens": 16,
                 "finetune_max_steps": 1},
    },
}


def profile_name() -> str:
    name = os.environ.get("RESTEM_PROFILE", "default")
    if name not in PROFILES:
        raise ValueError(f"RESTEM_PROFILE={name!r} is not one of {sorted(PROFILES)}")
    return name


def profile(name: str | None = None) -> dict[str, dict[str, Any]]:
    return PROFILES[name or profile_name()]
