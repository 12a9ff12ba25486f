"""Score an iteration's samples again with the verifiers installed now, into the `rescores` table.

The recorded `rewards` stay as they were (they are what the fine-tune trained on);
`sql/rescore_diff.sql` lists the verdicts that a verifier change flips.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from restem_assets.rewards import score_samples
from restem_assets.store.schemas import RESCORES
from restem_assets.store.tables import ParquetStore


@dataclass
class RescoreSummary:
    iteration: int
    samples: int = 0
    gained: int = 0  # reward 0 -> 1
    lost: int = 0  # reward 1 -> 0
    reason_changed: int = 0
    new_reasons: Counter = field(default_factory=Counter)  # reason now, for every changed verdict


def rescore_iteration(store: ParquetStore, iteration: int, batch_size: int = 2048) -> RescoreSummary:
    problems = {p["problem_id"]: p for p in store.read_table("problems").to_pylist()}
    recorded = {(r["problem_id"], r["sample_idx"]): (r["reward"], r["reason"])
                for r in store.read_table("rewards", iteration, columns=["problem_id", "sample_idx", "reward",
                                                                         "reason"]).to_pylist()}
    summary = RescoreSummary(iteration)
    with store.writer("rescores", RESCORES, iteration) as writer:
        for batch in store.iter_batches("samples", iteration, batch_size=batch_size,
                                        columns=["problem_id", "sample_idx", "completion"]):
            rows = score_samples(batch.to_pylist(), problems)
            writer.write(rows)
            for row in rows:
                summary.samples += 1
                old = recorded.get((row["problem_id"], row["sample_idx"]))
                if old is None or (old[0], old[1]) == (row["reward"], row["reason"]):
                    continue
                summary.gained += old[0] != 1.0 and row["reward"] == 1.0
                summary.lost += old[0] == 1.0 and row["reward"] != 1.0
                summary.reason_changed += 1
                summary.new_reasons[row["reason"]] += 1
    return summary
