-- Samples and correct samples per problem and iteration: which problems the policy
-- solves reliably, which it never solves, and how that moves between iterations.
-- Optional parameter: set the variable `iteration` to keep one iteration only.
-- Samples and rewards are aggregated separately and then joined on the small
-- aggregates (rewards rows are one per sample by construction): at 10M samples this
-- is several times faster than joining row by row through scored_samples.
WITH s AS (
    SELECT iteration, problem_id, count(*) AS n_samples
    FROM samples
    WHERE getvariable('iteration') IS NULL OR iteration = getvariable('iteration')::BIGINT
    GROUP BY iteration, problem_id
), r AS (
    SELECT iteration, problem_id, count(reward) AS n_scored, count(*) FILTER (WHERE reward = 1) AS n_correct
    FROM rewards
    WHERE getvariable('iteration') IS NULL OR iteration = getvariable('iteration')::BIGINT
    GROUP BY iteration, problem_id
)
SELECT
    s.iteration,
    s.problem_id,
    p.task,
    s.n_samples,
    coalesce(r.n_correct, 0) AS n_correct,
    r.n_correct / nullif(r.n_scored, 0) AS pass_rate
FROM s
LEFT JOIN r USING (iteration, problem_id)
LEFT JOIN problems AS p USING (problem_id)
ORDER BY s.iteration, s.problem_id;
