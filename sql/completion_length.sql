-- Completion length (generated tokens) per iteration: mean, median, p90 and max, for
-- each finish_reason and for all samples together (finish_reason = 'all'). Shows
-- whether self-training makes answers longer or shorter, and how many hit the limit.
-- Percentiles interpolate linearly between samples (quantile_cont).
SELECT
    iteration,
    CASE WHEN grouping(finish_reason) = 1 THEN 'all' ELSE finish_reason END AS finish_reason,
    count(*) AS n_samples,
    avg(n_tokens) AS mean_tokens,
    quantile_cont(n_tokens, 0.5) AS p50_tokens,
    quantile_cont(n_tokens, 0.9) AS p90_tokens,
    max(n_tokens) AS max_tokens
FROM samples
GROUP BY GROUPING SETS ((iteration, finish_reason), (iteration))
ORDER BY iteration, grouping(finish_reason), finish_reason;
