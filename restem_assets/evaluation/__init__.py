"""Evaluation of a policy: the held-out split (`held_out`: greedy pass@1, pass@k, maj@k), the metrics
themselves (`metrics`) and benchmarks outside the task (`transfer_benchmarks`)."""
