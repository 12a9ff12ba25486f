-- How each ReST^EM iteration went, one row per policy (0 = the base model):
-- held-out greedy pass@1, pass@1/pass@k/maj@k from the sampled evaluation, the
-- E-step that produced the policy (correct samples, problems covered, SFT examples)
-- and the fine-tune's final training loss.
WITH ev AS (
    SELECT iteration,
           count(*) AS test_problems,
           avg(greedy_correct::DOUBLE) AS greedy_pass_at_1,
           count(*) FILTER (WHERE greedy_correct) AS greedy_correct,
           max(k) AS k,
           avg(pass_at_1) AS pass_at_1,
           avg(pass_at_k) AS pass_at_k,
           avg(majority_correct::DOUBLE) AS maj_at_k
    FROM evaluations GROUP BY iteration
), fmt AS (
    SELECT iteration, avg((extracted_answer IS NOT NULL)::DOUBLE) AS greedy_format_rate
    FROM eval_samples WHERE mode = 'greedy' GROUP BY iteration
), rw AS (
    SELECT iteration,
           count(*) AS samples,
           count(*) FILTER (WHERE reward = 1) AS correct_samples,
           count(DISTINCT problem_id) FILTER (WHERE reward = 1) AS problems_covered
    FROM rewards GROUP BY iteration
), sft AS (
    SELECT iteration, count(*) AS sft_examples FROM sft_set GROUP BY iteration
), ft AS (
    SELECT iteration, arg_max(loss, step) AS final_train_loss FROM finetune_log GROUP BY iteration
)
SELECT ev.iteration, ev.test_problems, ev.greedy_pass_at_1, ev.greedy_correct, ev.k, ev.pass_at_1, ev.pass_at_k,
       ev.maj_at_k, fmt.greedy_format_rate, rw.samples, rw.correct_samples, rw.problems_covered, sft.sft_examples,
       ft.final_train_loss
FROM ev
LEFT JOIN fmt USING (iteration)
LEFT JOIN rw USING (iteration)
LEFT JOIN sft USING (iteration)
LEFT JOIN ft USING (iteration)
ORDER BY ev.iteration;
