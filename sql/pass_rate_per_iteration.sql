-- Pass rate per iteration: how many training samples were drawn, how many are scored,
-- how many earned reward 1, and the share correct among the scored ones.
-- A rising pass rate across iterations is the first sign that self-training helps.
SELECT iteration, n_samples, n_scored, n_correct, n_correct / nullif(n_scored, 0) AS pass_rate
FROM sample_outcomes
ORDER BY iteration;
