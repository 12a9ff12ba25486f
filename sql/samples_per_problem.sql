-- Samples and correct samples per problem and iteration: which problems the policy
-- solves reliably, which it never solves, and how that moves between iterations.
-- Optional parameter: set the variable `iteration` to keep one iteration only.
SELECT
    s.iteration,
    s.problem_id,
    p.task,
    count(*) AS n_samples,
    count(*) FILTER (WHERE s.reward = 1) AS n_correct,
    count(*) FILTER (WHERE s.reward = 1) / nullif(count(s.reward), 0) AS pass_rate
FROM scored_samples AS s
LEFT JOIN problems AS p USING (problem_id)
WHERE getvariable('iteration') IS NULL OR s.iteration = getvariable('iteration')::BIGINT
GROUP BY s.iteration, s.problem_id, p.task
ORDER BY s.iteration, s.problem_id;
