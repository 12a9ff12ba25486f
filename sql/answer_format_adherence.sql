-- Answer-format adherence per iteration: the share of scored samples from which the
-- verifier extracted an answer (reason <> 'no_answer'), and the share of samples cut
-- off at max_new_tokens (finish_reason = 'length'), the usual cause of a missing answer.
SELECT
    iteration,
    count(*) AS n_samples,
    count(reason) AS n_scored,
    count(*) FILTER (WHERE reason <> 'no_answer') AS n_answered,
    count(*) FILTER (WHERE reason <> 'no_answer') / nullif(count(reason), 0) AS answered_share,
    count(*) FILTER (WHERE finish_reason = 'length') AS n_truncated,
    count(*) FILTER (WHERE finish_reason = 'length') / count(*) AS truncated_share
FROM scored_samples
GROUP BY iteration
ORDER BY iteration;
