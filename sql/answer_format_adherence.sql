-- Answer-format adherence per iteration: the share of scored samples from which the
-- verifier extracted an answer (reason <> 'no_answer'), and the share of samples cut
-- off at max_new_tokens (finish_reason = 'length'), the usual cause of a missing answer.
SELECT iteration, n_samples, n_scored, n_answered, n_answered / nullif(n_scored, 0) AS answered_share,
       n_truncated, n_truncated / n_samples AS truncated_share
FROM sample_outcomes
ORDER BY iteration;
