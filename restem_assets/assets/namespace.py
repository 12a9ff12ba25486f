"""Asset keys of one experiment: `samples` for the default experiment, `NAME/samples` for experiment NAME.

The asset functions are defined once (unprefixed); `experiment_assets(name)` in this package's
`__init__` copies them under the experiment's key prefix. A running asset learns its
experiment's prefix from its own key, so every key it names (the policy it reads or reports,
the stages whose materializations it reads) stays inside its experiment.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

Prefix = tuple[str, ...]


def key(name: str, prefix: Sequence[str] = ()) -> dg.AssetKey:
    return dg.AssetKey([*prefix, name])


def prefix_of(context) -> Prefix:
    """The key prefix of the running asset (its experiment's namespace)."""
    return tuple(context.asset_key.path[:-1])


def prefix_assets(assets: Sequence, prefix: Sequence[str]) -> list:
    """Copies of `assets` (AssetsDefinitions and AssetSpecs) with every key, dependency and check under `prefix`."""
    prefix = tuple(prefix)
    if not prefix:
        return list(assets)
    keys: set[dg.AssetKey] = set()
    for a in assets:
        keys |= {a.key} if isinstance(a, dg.AssetSpec) else set(a.keys)
    replacements = {k: dg.AssetKey([*prefix, *k.path]) for k in keys}
    return [a.replace_attributes(key=replacements[a.key]) if isinstance(a, dg.AssetSpec)
            else a.with_attributes(asset_key_replacements=replacements) for a in assets]
