-- Verdicts that changed when an iteration's samples were scored again with the verifiers
-- installed now (`restem rescore --iteration i` writes the rescores table): the recorded
-- reward/reason/answer and verifier version beside the new ones.
SELECT
    iteration,
    problem_id,
    sample_idx,
    coalesce(n.verifier, r.verifier) AS verifier,
    r.verifier_version AS old_version,
    n.verifier_version AS new_version,
    r.reward AS old_reward,
    n.reward AS new_reward,
    r.reason AS old_reason,
    n.reason AS new_reason,
    r.extracted_answer AS old_answer,
    n.extracted_answer AS new_answer
FROM rewards AS r
JOIN rescores AS n USING (iteration, problem_id, sample_idx)
WHERE r.reward IS DISTINCT FROM n.reward OR r.reason IS DISTINCT FROM n.reason
ORDER BY iteration, problem_id, sample_idx;
