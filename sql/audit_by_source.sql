-- audit_by_source: the reward audit's flag rate on self-generated against hinted rows, per experiment and
-- iteration. Audited rows: every row the SFT selection kept (sft_set) plus the hinted rows the audit dropped
-- from it (a hinted completion is kept only if no rule flags it); flagged: rows with any rule's finding.
WITH audited AS (
    SELECT experiment, iteration, problem_id, sample_idx FROM all_sft_set
    UNION
    SELECT experiment, iteration, problem_id, sample_idx FROM all_reward_audit
), flagged AS (
    SELECT experiment, iteration, problem_id, sample_idx, string_agg(DISTINCT rule, ', ' ORDER BY rule) AS rules
    FROM all_reward_audit GROUP BY experiment, iteration, problem_id, sample_idx
), rules AS (
    SELECT a.experiment, a.iteration, coalesce(s.source, 'self') AS source, f.rules
    FROM audited AS a
    JOIN all_samples AS s USING (experiment, iteration, problem_id, sample_idx)
    LEFT JOIN flagged AS f USING (experiment, iteration, problem_id, sample_idx)
)
SELECT experiment, iteration, source, count(*) AS audited, count(rules) AS flagged,
       count(rules)::DOUBLE / count(*) AS flag_rate,
       count(*) FILTER (WHERE rules LIKE '%mentions_hint%') AS mentions_hint,
       count(*) FILTER (WHERE rules LIKE '%no_working%') AS no_working,
       count(*) FILTER (WHERE rules LIKE '%wrong_step%') AS wrong_step
FROM rules
GROUP BY experiment, iteration, source
ORDER BY experiment, iteration, source;
