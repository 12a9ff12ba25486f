-- coverage_per_round: the E-step round by round, per experiment and iteration (rest.sampling; fixed K is
-- one round 0): problems sampled, samples and generated tokens in the round, problems covered for the first
-- time (a correct sample), and cumulatively covered problems and tokens. The hinted round (source 'hinted')
-- counts what the reward accepted; the SFT set drops hinted rows the reward audit flags (audit_by_source).
WITH s AS (
    SELECT s.experiment, s.iteration, coalesce(s.round, 0) AS round, coalesce(s.source, 'self') AS source,
           s.problem_id, s.n_tokens, r.reward
    FROM all_samples AS s
    JOIN all_rewards AS r USING (experiment, iteration, problem_id, sample_idx)
), per_round AS (
    SELECT experiment, iteration, round, min(source) AS source, count(DISTINCT problem_id) AS problems_sampled,
           count(*) AS samples, sum(n_tokens)::BIGINT AS tokens, count(*) FILTER (WHERE reward = 1) AS correct
    FROM s GROUP BY experiment, iteration, round
), first_covered AS (
    SELECT experiment, iteration, problem_id, min(round) AS round FROM s WHERE reward = 1
    GROUP BY experiment, iteration, problem_id
), newly AS (
    SELECT experiment, iteration, round, count(*) AS newly_covered FROM first_covered
    GROUP BY experiment, iteration, round
), train AS (
    SELECT experiment, count(*) AS train_problems FROM all_problems WHERE split = 'train' GROUP BY experiment
)
SELECT p.experiment, p.iteration, p.round, p.source, p.problems_sampled, p.samples, p.tokens, p.correct,
       coalesce(n.newly_covered, 0) AS newly_covered,
       (sum(coalesce(n.newly_covered, 0)) OVER w)::BIGINT AS covered,
       t.train_problems,
       sum(coalesce(n.newly_covered, 0)) OVER w / t.train_problems AS covered_share,
       (sum(p.tokens) OVER w)::BIGINT AS tokens_so_far
FROM per_round AS p
LEFT JOIN newly AS n USING (experiment, iteration, round)
LEFT JOIN train AS t USING (experiment)
WINDOW w AS (PARTITION BY p.experiment, p.iteration ORDER BY p.round)
ORDER BY p.experiment, p.iteration, p.round;
