-- The SFT set of each iteration: kept examples, distinct problems, examples per problem
-- (ReST^EM caps this at 10) and the completion tokens the fine-tune will train on.
WITH per_problem AS (
    SELECT iteration, problem_id, count(*) AS n_examples, sum(n_tokens) AS n_tokens
    FROM sft_set
    GROUP BY iteration, problem_id
)
SELECT
    iteration,
    sum(n_examples)::BIGINT AS n_examples,
    count(*) AS n_problems,
    sum(n_examples) / count(*) AS mean_examples_per_problem,
    max(n_examples) AS max_examples_per_problem,
    sum(n_tokens)::BIGINT AS n_tokens
FROM per_problem
GROUP BY iteration
ORDER BY iteration;
