-- Count of each reward reason per iteration, with its share of that iteration's rewards.
-- Math: correct | wrong | no_answer | unparsable. Code: passed | syntax_error |
-- runtime_error | wrong_answer | timeout | memory | sandbox_violation.
SELECT
    iteration,
    reason,
    count(*) AS n,
    count(*) / sum(count(*)) OVER (PARTITION BY iteration) AS share
FROM rewards
GROUP BY iteration, reason
ORDER BY iteration, n DESC, reason;
