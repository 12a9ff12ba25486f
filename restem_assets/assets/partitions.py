"""Partitions: one per ReST^EM iteration.

Keys are static ("1".."50"): iteration i samples from policy i-1, and only static keys can
say "i-1" (`StaticPartitionMapping`; Dagster has no offset mapping for dynamic partitions
and refuses cycles between asset keys). Static keys also need no instance state, so every
iteration up to the cap exists without a restart or an environment change. The paper stops
at 2-3 iterations (gains vanish, overfitting grows), so 50 is far beyond any useful run.
The policy (and its evaluation) has one more key, "0": the base model. Ordering across
iterations in a backfill comes from `require_policy` (assets/policy_lineage.py): a step waits
in its run while the run that produces its policy is running, and gives its run slot back (Dagster
re-queues it behind the producer) while that run is still queued. See ARCHITECTURE.md.
"""

from __future__ import annotations

import dagster as dg

MAX_ITERATIONS = 50

iteration_partitions = dg.StaticPartitionsDefinition([str(i) for i in range(1, MAX_ITERATIONS + 1)])
policy_partitions = dg.StaticPartitionsDefinition([str(i) for i in range(0, MAX_ITERATIONS + 1)])

# samples[i] depends on policy[i-1]: a fixed offset, expressed with static keys.
previous_policy_mapping = dg.StaticPartitionMapping({str(i - 1): str(i) for i in range(1, MAX_ITERATIONS + 1)})
