-- compare_experiments: every experiment side by side, iteration by iteration (policy 0 = its base model).
-- Held-out greedy pass@1 and its change from the experiment's own base model, pass@k and maj@k of the
-- sampled evaluation, the E-step that produced the policy (its sampling strategy and hints, samples, correct
-- samples, train coverage = train problems in the SFT set, of which hinted, E-step tokens), the SFT set,
-- the fine-tune's final train loss, the iteration's wall time (E-step, fine-tune and evaluation of the
-- policy), and the settings that tell the experiments apart (from the `experiments` registry; NULL for data
-- written before experiments were recorded). Paired intervals: the progress report.
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
), tok AS (
    SELECT experiment, iteration, sum(n_tokens)::BIGINT AS estep_tokens FROM all_samples GROUP BY experiment, iteration
), sft AS (
    SELECT experiment, iteration, count(*) AS sft_examples, count(DISTINCT problem_id) AS train_coverage,
           count(DISTINCT problem_id) FILTER (WHERE source = 'hinted') AS hinted_problems
    FROM all_sft_set GROUP BY experiment, iteration
), ft AS (
    SELECT experiment, iteration, arg_max(loss, step) AS final_train_loss FROM all_finetune_log GROUP BY experiment, iteration
), wall AS (
    SELECT experiment, iteration, sum(wall_seconds) AS wall_seconds FROM all_stage_costs
    WHERE stage IN ('samples', 'rewards', 'sft_set', 'finetune', 'evaluation') GROUP BY experiment, iteration
)
SELECT ev.iteration, ev.experiment, x.samples_per_problem, x.init_from,
       json_extract_string(x.config, '$.rest.sampling') AS sampling,
       json_extract(x.config, '$.rest.hints')::BOOLEAN AS hints,
       ev.test_problems, ev.greedy_pass_at_1,
       ev.greedy_pass_at_1 - base.base_greedy_pass_at_1 AS greedy_gain_vs_base, ev.k, ev.pass_at_k, ev.maj_at_k,
       rw.samples, rw.correct_samples, sft.train_coverage, sft.hinted_problems, tok.estep_tokens, sft.sft_examples,
       ft.final_train_loss, wall.wall_seconds
FROM ev
LEFT JOIN base USING (experiment)
LEFT JOIN rw USING (experiment, iteration)
LEFT JOIN tok USING (experiment, iteration)
LEFT JOIN sft USING (experiment, iteration)
LEFT JOIN ft USING (experiment, iteration)
LEFT JOIN wall USING (experiment, iteration)
LEFT JOIN experiments AS x USING (experiment)
ORDER BY ev.iteration, ev.experiment;
