-- Accepted samples the reward audit flagged (the reward_audit table, written with each
-- sft_set), per iteration and rule: how many, over how many problems, as a share of the
-- iteration's SFT set, and one example. Rules: see restem_assets/rewards/audit.py.
WITH sft AS (
    SELECT iteration, count(*) AS n_sft FROM sft_set GROUP BY iteration
)
SELECT
    a.iteration,
    a.rule,
    count(*) AS n_flagged,
    count(DISTINCT a.problem_id) AS n_problems,
    count(*) / any_value(s.n_sft) AS share_of_sft_set,
    min(a.problem_id || '#' || a.sample_idx) AS example
FROM reward_audit AS a
LEFT JOIN sft AS s USING (iteration)
GROUP BY a.iteration, a.rule
ORDER BY a.iteration, n_flagged DESC, a.rule;
