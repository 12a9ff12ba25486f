-- transfer_pass_rate: greedy pass@1 of each policy on benchmarks it never trained on
-- (rest.transfer_benchmarks, e.g. HumanEval for a policy trained on function_synthesis),
-- with the failure kinds, so "does it help on a real benchmark?" has a number.
SELECT iteration,
       benchmark,
       count(*) AS problems,
       count(*) FILTER (WHERE greedy_correct) AS solved,
       round(avg(greedy_correct::DOUBLE), 4) AS greedy_pass_at_1,
       count(*) FILTER (WHERE reason = 'syntax_error') AS syntax_error,
       count(*) FILTER (WHERE reason = 'wrong_answer') AS wrong_answer,
       count(*) FILTER (WHERE reason = 'runtime_error') AS runtime_error,
       count(*) FILTER (WHERE reason NOT IN ('passed', 'syntax_error', 'wrong_answer', 'runtime_error')) AS other
FROM transfer_evaluations
GROUP BY iteration, benchmark
ORDER BY benchmark, iteration;
