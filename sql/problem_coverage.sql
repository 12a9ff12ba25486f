-- Share of train problems solved by at least one sample, per iteration (pass@K on the
-- train set). Only solved problems can enter the SFT set, so this bounds what an
-- iteration can learn from. `coverage` divides by all train problems in `problems`,
-- `coverage_of_sampled` by the train problems that were sampled this iteration.
-- Samples and rewards are aggregated separately and then joined on the small
-- aggregates (rewards rows are one per sample by construction): at 10M samples this
-- is several times faster than joining row by row through scored_samples.
WITH train AS (
    SELECT problem_id FROM problems WHERE split = 'train'
), sampled AS (
    SELECT iteration, count(DISTINCT problem_id) AS n_problems_sampled
    FROM samples WHERE problem_id IN (SELECT problem_id FROM train)
    GROUP BY iteration
), solved AS (
    SELECT iteration, count(DISTINCT problem_id) AS n_problems_solved
    FROM rewards WHERE reward = 1 AND problem_id IN (SELECT problem_id FROM train)
    GROUP BY iteration
)
SELECT
    sampled.iteration,
    (SELECT count(*) FROM train) AS n_train_problems,
    sampled.n_problems_sampled,
    coalesce(solved.n_problems_solved, 0) AS n_problems_solved,
    coalesce(solved.n_problems_solved, 0) / nullif((SELECT count(*) FROM train), 0) AS coverage,
    coalesce(solved.n_problems_solved, 0) / sampled.n_problems_sampled AS coverage_of_sampled
FROM sampled
LEFT JOIN solved USING (iteration)
ORDER BY sampled.iteration;
