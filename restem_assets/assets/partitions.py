"""Partitions: one per ReST^EM iteration.

Keys are static ("1".."N") so tests and the CLI need no instance state, and the
webserver shows every iteration slot. The policy (and its evaluation) has one
more key, "0": the base model. Iteration i samples from policy i-1.
"""

from __future__ import annotations

import dagster as dg

MAX_ITERATIONS = 10

iteration_partitions = dg.StaticPartitionsDefinition([str(i) for i in range(1, MAX_ITERATIONS + 1)])
policy_partitions = dg.StaticPartitionsDefinition([str(i) for i in range(0, MAX_ITERATIONS + 1)])

# samples[i] depends on policy[i-1]: a fixed offset, expressed with static keys.
previous_policy_mapping = dg.StaticPartitionMapping({str(i - 1): str(i) for i in range(1, MAX_ITERATIONS + 1)})
