-- Pass rate per iteration: how many training samples were drawn, how many are scored,
-- how many earned reward 1, and the share correct among the scored ones.
-- A rising pass rate across iterations is the first sign that self-training helps.
SELECT
    iteration,
    count(*) AS n_samples,
    count(reward) AS n_scored,
    count(*) FILTER (WHERE reward = 1) AS n_correct,
    count(*) FILTER (WHERE reward = 1) / nullif(count(reward), 0) AS pass_rate
FROM scored_samples
GROUP BY iteration
ORDER BY iteration;
