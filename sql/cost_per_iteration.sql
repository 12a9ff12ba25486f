-- cost_per_iteration: what each stage of each iteration used (table stage_costs, written by every stage;
-- `evaluation` at iteration i evaluates policy i), one row per stage plus an 'all' row per iteration
-- (the ReST^EM stages only: the human-data baseline's human_* stages, filed under iteration 1, are not in it).
-- cost = CPU-hours x price per CPU hour + GPU-hours x price per GPU hour. The prices are the variables
-- cpu_hour_price / gpu_hour_price when set (`restem sql cost_per_iteration --set cpu_hour_price=0.05`),
-- else those the run recorded (rest.cpu_hour_price / rest.gpu_hour_price), else 0.
WITH c AS (
    SELECT experiment, iteration, stage, wall_seconds, cpu_seconds, gpu_seconds, peak_rss_bytes,
           prompt_tokens, generated_tokens, trained_tokens,
           coalesce(getvariable('cpu_hour_price'),
                    max(cpu_hour_price) OVER (PARTITION BY experiment, iteration), 0)::DOUBLE AS cpu_price,
           coalesce(getvariable('gpu_hour_price'),
                    max(gpu_hour_price) OVER (PARTITION BY experiment, iteration), 0)::DOUBLE AS gpu_price
    FROM all_stage_costs
), per_stage AS (
    SELECT experiment, iteration, stage, wall_seconds, cpu_seconds, gpu_seconds,
           peak_rss_bytes / 1048576.0 AS peak_rss_mb, prompt_tokens, generated_tokens, trained_tokens,
           cpu_seconds / 3600 * cpu_price + coalesce(gpu_seconds, 0) / 3600 * gpu_price AS cost
    FROM c
)
SELECT * FROM (
    SELECT * FROM per_stage
    UNION ALL
    SELECT experiment, iteration, 'all' AS stage, sum(wall_seconds), sum(cpu_seconds), sum(gpu_seconds),
           max(peak_rss_mb), sum(prompt_tokens)::BIGINT, sum(generated_tokens)::BIGINT,
           sum(trained_tokens)::BIGINT, sum(cost)
    FROM per_stage WHERE stage NOT LIKE 'human_%' GROUP BY experiment, iteration
)
ORDER BY experiment, iteration,
         CASE stage WHEN 'samples' THEN 1 WHEN 'rewards' THEN 2 WHEN 'sft_set' THEN 3 WHEN 'finetune' THEN 4
                    WHEN 'evaluation' THEN 5 WHEN 'all' THEN 9 ELSE 6 END, stage;
