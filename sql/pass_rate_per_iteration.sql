-- Pass rate per iteration: how many training samples were drawn, how many are scored,
-- how many earned reward 1, and the share correct among the scored ones.
-- A rising pass rate across iterations is the first sign that self-training helps.
-- Samples and rewards are aggregated separately and then joined on the small
-- aggregates (rewards rows are one per sample by construction): at 10M samples this
-- is several times faster than joining row by row through scored_samples.
WITH s AS (
    SELECT iteration, count(*) AS n_samples FROM samples GROUP BY iteration
), r AS (
    SELECT iteration, count(reward) AS n_scored, count(*) FILTER (WHERE reward = 1) AS n_correct
    FROM rewards GROUP BY iteration
)
SELECT
    s.iteration,
    s.n_samples,
    coalesce(r.n_scored, 0) AS n_scored,
    coalesce(r.n_correct, 0) AS n_correct,
    r.n_correct / nullif(r.n_scored, 0) AS pass_rate
FROM s
LEFT JOIN r USING (iteration)
ORDER BY s.iteration;
