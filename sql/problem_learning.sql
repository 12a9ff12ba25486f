-- problem_learning: per experiment, split and measure, how each policy's solved set moved from the previous
-- policy's (view all_problem_status): problems solved, newly solved, retained and forgotten. Measures:
-- 'greedy' (test split: greedy decoding correct) and 'sampled' (test: any of the k evaluation samples at
-- T=1.0 correct, i.e. pass@k; train: any of the K E-step samples drawn from that policy correct).
-- Policy 0 (the base model) has nothing to compare with: its moved counts are NULL.
WITH s AS (
    SELECT experiment, split, 'greedy' AS measure, iteration, problem_id, greedy_solved AS solved
    FROM all_problem_status WHERE greedy_solved IS NOT NULL
    UNION ALL
    SELECT experiment, split, 'sampled' AS measure, iteration, problem_id, sampled_solved AS solved
    FROM all_problem_status WHERE sampled_solved IS NOT NULL
)
SELECT cur.experiment, cur.split, cur.measure, cur.iteration,
       count(*) AS problems,
       count(*) FILTER (WHERE cur.solved) AS solved,
       CASE WHEN count(prev.solved) > 0 THEN count(*) FILTER (WHERE cur.solved AND NOT prev.solved) END AS newly_solved,
       CASE WHEN count(prev.solved) > 0 THEN count(*) FILTER (WHERE cur.solved AND prev.solved) END AS retained,
       CASE WHEN count(prev.solved) > 0 THEN count(*) FILTER (WHERE NOT cur.solved AND prev.solved) END AS forgotten
FROM s AS cur
LEFT JOIN s AS prev
       ON prev.experiment = cur.experiment AND prev.split = cur.split AND prev.measure = cur.measure
      AND prev.problem_id = cur.problem_id AND prev.iteration = cur.iteration - 1
GROUP BY cur.experiment, cur.split, cur.measure, cur.iteration
ORDER BY cur.experiment, cur.split, cur.measure, cur.iteration;
