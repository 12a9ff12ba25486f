-- difficulty_buckets: held-out greedy pass@1 (and pass@k) per difficulty bucket per policy, per experiment.
-- bucketing 'base_success_rate': the experiment's base model's success rate on the problem, over its k
-- evaluation samples at T=1.0 (the paper's difficulty): '0' (never solved), '(0, 0.25]', '(0.25, 1]'.
-- bucketing 'level': the task's own difficulty field (`level`, e.g. MATH "Level 3", or `difficulty`),
-- only for problems that have one (see also greedy_by_level).
WITH base AS (
    SELECT experiment, problem_id, n_correct::DOUBLE / k AS rate FROM all_evaluations WHERE iteration = 0 AND k > 0
), buckets AS (
    SELECT experiment, problem_id, 'base_success_rate' AS bucketing,
           CASE WHEN rate = 0 THEN '0' WHEN rate <= 0.25 THEN '(0, 0.25]' ELSE '(0.25, 1]' END AS bucket
    FROM base
    UNION ALL
    SELECT experiment, problem_id, 'level' AS bucketing,
           coalesce(json_extract_string(metadata, '$.level'), json_extract_string(metadata, '$.difficulty')) AS bucket
    FROM all_problems
    WHERE split = 'test'
      AND coalesce(json_extract_string(metadata, '$.level'), json_extract_string(metadata, '$.difficulty')) IS NOT NULL
)
SELECT e.experiment, b.bucketing, b.bucket, e.iteration,
       count(*) AS problems,
       avg(e.greedy_correct::DOUBLE) AS greedy_pass_at_1,
       avg(e.pass_at_k) AS pass_at_k
FROM all_evaluations AS e
JOIN buckets AS b USING (experiment, problem_id)
GROUP BY e.experiment, b.bucketing, b.bucket, e.iteration
ORDER BY e.experiment, b.bucketing, b.bucket, e.iteration;
