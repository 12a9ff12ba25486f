"""What the ReST^EM loop has done so far, read from the Dagster instance.

Shared by the CLI driver and the sensor, so both decide the next step the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from restem_assets.progress_report import improved


@dataclass
class LoopState:
    has_problems: bool
    has_base_policy: bool
    finetuned: set[int]
    evaluated: dict[int, float]  # policy iteration -> greedy pass@1

    def history(self) -> list[float]:
        """Greedy pass@1 of policy 0, 1, ... as far as evaluated without gaps."""
        out, i = [], 0
        while i in self.evaluated:
            out.append(self.evaluated[i])
            i += 1
        return out


def read_loop_state(instance: dg.DagsterInstance) -> LoopState:
    def partitions(key: str) -> set[int]:
        return {int(p) for p in instance.get_materialized_partitions(dg.AssetKey(key))}

    evaluated: dict[int, float] = {}
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("evaluation")), limit=1000).records
    for rec in sorted(records, key=lambda r: r.storage_id):
        mat = rec.asset_materialization
        if mat is not None and mat.partition is not None and "greedy_pass_at_1" in mat.metadata:
            evaluated[int(mat.partition)] = float(mat.metadata["greedy_pass_at_1"].value)
    return LoopState(
        has_problems=instance.get_latest_materialization_event(dg.AssetKey("problems")) is not None,
        has_base_policy=0 in partitions("policy"),
        finetuned=partitions("finetune"),
        evaluated=evaluated,
    )


@dataclass(frozen=True)
class Step:
    job: str  # "setup" | "iteration" | "evaluate" | "progress"
    partition: str | None = None


def next_step(state: LoopState, target_iterations: int, stop_when_no_improvement: bool) -> Step | str:
    """The next step of the loop, or a string saying why there is none."""
    if not state.has_problems or not state.has_base_policy:
        return Step("setup")
    if 0 not in state.evaluated:
        return Step("evaluate", "0")
    for i in range(1, target_iterations + 1):
        if i not in state.finetuned:
            history = state.history()
            if stop_when_no_improvement and len(history) >= 2 and len(history) == i and not improved(history):
                return f"stopped: held-out greedy pass@1 did not improve at iteration {i - 1} ({history})"
            return Step("iteration", str(i))
        if i not in state.evaluated:
            return Step("evaluate", str(i))
    return f"done: {target_iterations} iterations finetuned and evaluated"
