"""What the ReST^EM loop has done so far, read from the Dagster instance.

Shared by the CLI driver and the sensor, so both decide the next step the same way:
which assets of which iteration are materialized (a crashed iteration resumes at its
first missing step), and which materializations are stale because something upstream
was materialized again since (Dagster's data-version staleness, closed over everything
built on a stale materialization: `restem_assets/assets/staleness.py`). The loop never
reports "done" over stale iterations; with `refresh_stale` it redoes exactly the stale
steps, in dependency order, and keeps what is current (e.g. a launchpad re-run's model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from restem_assets.assets.staleness import ITERATION_ASSETS, stale_materializations
from restem_assets.reporting.progress_report import improved



@dataclass
class LoopState:
    has_problems: bool
    has_base_policy: bool
    materialized: dict[str, set[int]]  # iteration asset -> partitions materialized
    evaluated: dict[int, float]  # policy iteration -> greedy pass@1
    stale: dict[tuple[str, int], str] = field(default_factory=dict)  # (asset, partition) -> why

    @property
    def finetuned(self) -> set[int]:
        return self.materialized.get("finetune", set())

    def history(self) -> list[float]:
        """Greedy pass@1 of policy 0, 1, ... as far as evaluated without gaps."""
        out, i = [], 0
        while i in self.evaluated:
            out.append(self.evaluated[i])
            i += 1
        return out

    def stale_iterations(self) -> list[int]:
        return sorted({p for _, p in self.stale})


def read_loop_state(instance: dg.DagsterInstance, asset_graph=None, prefix: tuple[str, ...] = ()) -> LoopState:
    """The loop's state (of the experiment with asset-key prefix `prefix`); with `asset_graph` (the
    Definitions' graph) stale materializations are found too."""
    def partitions(key: str) -> set[int]:
        return {int(p) for p in instance.get_materialized_partitions(dg.AssetKey([*prefix, key]))}

    evaluated: dict[int, float] = {}
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey([*prefix, "evaluation"])),
                                              limit=1000).records
    for rec in sorted(records, key=lambda r: r.storage_id):
        mat = rec.asset_materialization
        if mat is not None and mat.partition is not None and "greedy_pass_at_1" in mat.metadata:
            evaluated[int(mat.partition)] = float(mat.metadata["greedy_pass_at_1"].value)
    return LoopState(
        has_problems=instance.get_latest_materialization_event(dg.AssetKey([*prefix, "problems"])) is not None,
        has_base_policy=0 in partitions("policy"),
        materialized={name: partitions(name) for name in ITERATION_ASSETS},
        evaluated=evaluated,
        stale=stale_materializations(instance, asset_graph, prefix) if asset_graph is not None else {},
    )


@dataclass(frozen=True)
class Step:
    job: str  # "setup" | "iteration" | "evaluate" | "report_progress"
    partition: str | None = None
    assets: tuple[str, ...] | None = None  # a subset of the job's assets (resuming an interrupted iteration)


def stale_message(state: LoopState) -> str:
    first = max(state.stale_iterations()[0], 1)
    order = {name: i for i, name in enumerate((*ITERATION_ASSETS, "evaluation"))}
    what = "; ".join(f"{name}[{p}]: {why}" for (name, p), why in
                     sorted(state.stale.items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], len(order)))))
    return (f"stale: {what}. Something upstream was materialized again after these: "
            f"`restem run --refresh-stale` redoes only these, keeping what is current (a re-run from the launchpad "
            f"included); `restem run --from-iteration {first}` would redo iteration {first} onward with this "
            f"command's settings instead")


def refresh_step(state: LoopState, target_iterations: int) -> Step | None:
    """The first stale step up to `target_iterations`, in dependency order: iteration i's stale assets (the
    rest of its assets stay), then evaluation[i]; None when nothing there is stale. What made them stale is
    current, so it is not redone."""
    for i in range(target_iterations + 1):
        names = tuple(name for name in ITERATION_ASSETS if (name, i) in state.stale) if i else ()
        if names:
            return Step("iteration", str(i), None if names == ITERATION_ASSETS else names)
        if ("evaluation", i) in state.stale:
            return Step("evaluate", str(i))
    return None


def next_step(state: LoopState, target_iterations: int, stop_when_no_improvement: bool,
              refresh_stale: bool = False) -> Step | str:
    """The next step of the loop, or a string saying why there is none ("done", "stopped", "stale").

    Stale materializations (up to the target) stop the loop, unless `refresh_stale`: then they are redone first."""
    if not state.has_problems or not state.has_base_policy:
        return Step("setup")
    if any(p <= target_iterations for _, p in state.stale):
        step = refresh_step(state, target_iterations) if refresh_stale else None
        return step if step is not None else stale_message(state)
    if 0 not in state.evaluated:
        return Step("evaluate", "0")
    for i in range(1, target_iterations + 1):
        missing = [name for name in ITERATION_ASSETS if i not in state.materialized.get(name, set())]
        if missing:
            first = ITERATION_ASSETS.index(missing[0])
            if first == 0:  # nothing of iteration i yet: Algorithm 1's stopping rule applies here
                history = state.history()
                if stop_when_no_improvement and len(history) >= 2 and len(history) == i and not improved(history):
                    return f"stopped: held-out greedy pass@1 did not improve at iteration {i - 1} ({history})"
                return Step("iteration", str(i))
            return Step("iteration", str(i), ITERATION_ASSETS[first:])
        if i not in state.evaluated:
            return Step("evaluate", str(i))
    return f"done: {target_iterations} iterations finetuned and evaluated"
