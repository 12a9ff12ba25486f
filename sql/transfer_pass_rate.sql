-- transfer_pass_rate: greedy pass@1 of each policy on benchmarks it never trained on
-- (rest.transfer_benchmarks, e.g. HumanEval for a policy trained on function_synthesis),
-- with the failure kinds, so "does it help on a real benchmark?" has a number.
SELECT iteration,
       benchmark,
       count(*) AS problems,
       sum(greedy_correct::INTEGER) AS solved,
       round(avg(greedy_correct::DOUBLE), 4) AS greedy_pass_at_1,
       sum((reason = 'syntax_error')::INTEGER) AS syntax_error,
       sum((reason = 'wrong_answer')::INTEGER) AS wrong_answer,
       sum((reason = 'runtime_error')::INTEGER) AS runtime_error,
       sum((reason NOT IN ('passed', 'syntax_error', 'wrong_answer', 'runtime_error'))::INTEGER) AS other
FROM transfer_evaluations
GROUP BY iteration, benchmark
ORDER BY benchmark, iteration;
