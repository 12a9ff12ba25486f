-- Share of train problems solved by at least one sample, per iteration (pass@K on the
-- train set). Only solved problems can enter the SFT set, so this bounds what an
-- iteration can learn from. `coverage` divides by all train problems in `problems`,
-- `coverage_of_sampled` by the train problems that were sampled this iteration.
WITH train AS (
    SELECT problem_id FROM problems WHERE split = 'train'
),
per_problem AS (
    SELECT iteration, problem_id, count(*) FILTER (WHERE reward = 1) > 0 AS solved
    FROM scored_samples
    WHERE problem_id IN (SELECT problem_id FROM train)
    GROUP BY iteration, problem_id
)
SELECT
    iteration,
    (SELECT count(*) FROM train) AS n_train_problems,
    count(*) AS n_problems_sampled,
    count(*) FILTER (WHERE solved) AS n_problems_solved,
    count(*) FILTER (WHERE solved) / nullif((SELECT count(*) FROM train), 0) AS coverage,
    count(*) FILTER (WHERE solved) / count(*) AS coverage_of_sampled
FROM per_problem
GROUP BY iteration
ORDER BY iteration;
