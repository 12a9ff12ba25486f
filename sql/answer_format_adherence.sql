-- Answer-format adherence per iteration: the share of scored samples from which the
-- verifier extracted an answer (reason <> 'no_answer'), and the share of samples cut
-- off at max_new_tokens (finish_reason = 'length'), the usual cause of a missing answer.
-- Samples and rewards are aggregated separately and then joined on the small
-- aggregates (rewards rows are one per sample by construction): at 10M samples this
-- is several times faster than joining row by row through scored_samples.
WITH s AS (
    SELECT iteration, count(*) AS n_samples, count(*) FILTER (WHERE finish_reason = 'length') AS n_truncated
    FROM samples GROUP BY iteration
), r AS (
    SELECT iteration, count(reason) AS n_scored, count(*) FILTER (WHERE reason <> 'no_answer') AS n_answered
    FROM rewards GROUP BY iteration
)
SELECT
    s.iteration,
    s.n_samples,
    coalesce(r.n_scored, 0) AS n_scored,
    coalesce(r.n_answered, 0) AS n_answered,
    r.n_answered / nullif(r.n_scored, 0) AS answered_share,
    s.n_truncated,
    s.n_truncated / s.n_samples AS truncated_share
FROM s
LEFT JOIN r USING (iteration)
ORDER BY s.iteration;
