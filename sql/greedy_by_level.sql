-- greedy_by_level: held-out greedy pass@1 and pass@k per difficulty level per policy.
-- The level is the problem's own difficulty field: `level` (function_synthesis: composed
-- steps; MATH: "Level 1".."Level 5") or `difficulty` (APPS); problems with neither are "all".
WITH levels AS (
    SELECT problem_id,
           coalesce(json_extract_string(metadata, '$.level'),
                    json_extract_string(metadata, '$.difficulty'), 'all') AS level
    FROM problems
)
SELECT e.iteration,
       l.level,
       count(*) AS problems,
       round(avg(e.greedy_correct::DOUBLE), 4) AS greedy_pass_at_1,
       round(avg(e.pass_at_k), 4) AS pass_at_k
FROM evaluations AS e
JOIN levels AS l USING (problem_id)
GROUP BY e.iteration, l.level
ORDER BY l.level, e.iteration;
