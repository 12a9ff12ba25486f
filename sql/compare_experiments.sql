-- compare_experiments: every experiment side by side, iteration by iteration (policy 0 = its base model).
-- Held-out greedy pass@1 and its change from the experiment's own base model, pass@k and maj@k of the
-- sampled evaluation, the E-step that produced the policy (correct samples, SFT examples), the fine-tune's
-- final train loss, and the settings that tell the experiments apart (from the `experiments` registry;
-- NULL for data written before experiments were recorded). Paired intervals: the progress report.
WITH ev AS (
    SELECT experiment, iteration,
           count(*) AS test_problems,
           avg(greedy_correct::DOUBLE) AS greedy_pass_at_1,
           max(k) AS k,
           avg(pass_at_k) AS pass_at_k,
           avg(majority_correct::DOUBLE) AS maj_at_k
    FROM all_evaluations GROUP BY experiment, iteration
), base AS (
    SELECT experiment, greedy_pass_at_1 AS base_greedy_pass_at_1 FROM ev WHERE iteration = 0
), rw AS (
    SELECT experiment, iteration, count(*) AS samples, count(*) FILTER (WHERE reward = 1) AS correct_samples
    FROM all_rewards GROUP BY experiment, iteration
), sft AS (
    SELECT experiment, iteration, count(*) AS sft_examples FROM all_sft_set GROUP BY experiment, iteration
), ft AS (
    SELECT experiment, iteration, arg_max(loss, step) AS final_train_loss FROM all_finetune_log GROUP BY experiment, iteration
)
SELECT ev.iteration, ev.experiment, x.samples_per_problem, x.init_from, ev.test_problems, ev.greedy_pass_at_1,
       ev.greedy_pass_at_1 - base.base_greedy_pass_at_1 AS greedy_gain_vs_base, ev.k, ev.pass_at_k, ev.maj_at_k,
       rw.samples, rw.correct_samples, sft.sft_examples, ft.final_train_loss
FROM ev
LEFT JOIN base USING (experiment)
LEFT JOIN rw USING (experiment, iteration)
LEFT JOIN sft USING (experiment, iteration)
LEFT JOIN ft USING (experiment, iteration)
LEFT JOIN experiments AS x USING (experiment)
ORDER BY ev.iteration, ev.experiment;
