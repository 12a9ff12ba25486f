"""`setting(default, help)`: a dataclass field that carries its launchpad description.

The settings classes (ReSTSettings, FinetuneSettings, EngineSettings) declare their fields with it;
restem_assets/assets/resources.py turns each into a resource field with that description.
"""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Any


def setting(default: Any, help: str) -> Any:  # noqa: A002 - the word users see in the launchpad
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})
