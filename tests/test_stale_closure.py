"""Staleness closed over everything built on a stale materialization, on a real instance with real materializations.

Stand-ins with restem's asset keys, partitions and dependencies (taken from restem's own asset graph, partition
mappings included) materialize in milliseconds; `finetune[i]` reports policy[i] with a new version per run, as the
real one does. Issue 23: after policy[1] got a new version only samples[2] and evaluation[1] were STALE, while
rewards[2], sft_set[2], finetune[2] and evaluation[2], all built on the old model, showed FRESH.
"""

import dagster as dg
import pytest

from dagster_project.loop_state import ITERATION_ASSETS, Step, next_step, read_loop_state
from restem_assets.assets.namespace import prefix_assets
from restem_assets.assets.policy_lineage import report_policy
from restem_assets.assets.staleness import asset_graph, stale_causes, stale_materializations
from tests.test_loop_state import AFTER_A_LAUNCHPAD_RERUN



def stand_ins(prefix: tuple[str, ...]) -> dg.Definitions:
    """restem's set-up, iteration and evaluation assets as no-ops with the real graph's keys and dependencies."""
    real = asset_graph(())

    def stand_in(name: str, body=None):
        node = real.get(dg.AssetKey(name))
        deps = [dg.AssetDep(parent, partition_mapping=node.partition_mappings.get(parent))
                for parent in sorted(node.parent_keys)]

        @dg.asset(name=name, partitions_def=node.partitions_def, deps=deps)
        def _asset(context: dg.AssetExecutionContext):
            if body is not None:
                body(context)

        return _asset

    def base_model(context):
        report_policy(context, 0, "/models/base", version="base")

    def evaluation(context):  # what the loop reads to call a policy evaluated
        context.add_output_metadata({"greedy_pass_at_1": 0.5})

    def finetune(context):  # a new model per run, as a real fine-tune (another learning rate, say) gives
        report_policy(context, int(context.partition_key), f"/models/{context.run.run_id}", version=context.run.run_id)

    policy = dg.AssetSpec("policy", partitions_def=real.get(dg.AssetKey("policy")).partitions_def)
    assets = [policy, stand_in("problems"), stand_in("base_model", base_model),
              stand_in("samples"), stand_in("rewards"), stand_in("sft_set"), stand_in("finetune", finetune),
              stand_in("evaluation", evaluation)]
    assets = prefix_assets(assets, prefix)
    return dg.Definitions(assets=assets, jobs=[
        dg.define_asset_job("setup", selection=[dg.AssetKey([*prefix, n]) for n in ("problems", "base_model")]),
        dg.define_asset_job("iteration", selection=[dg.AssetKey([*prefix, n]) for n in ITERATION_ASSETS]),
        dg.define_asset_job("evaluate", selection=[dg.AssetKey([*prefix, "evaluation"])]),
    ])


class Loop:
    def __init__(self, instance, prefix):
        self.instance, self.prefix = instance, prefix
        self.defs = stand_ins(prefix)
        self.graph = self.defs.resolve_asset_graph()

    def run(self, step: Step) -> None:
        selection = [dg.AssetKey([*self.prefix, a]) for a in step.assets] if step.assets else None
        result = self.defs.resolve_job_def(step.job).execute_in_process(
            instance=self.instance, partition_key=step.partition, asset_selection=selection)
        assert result.success

    def complete(self, iterations: int = 2) -> None:
        """The whole loop to `iterations`, in the order `restem run` runs it."""
        for _ in range(4 * iterations + 4):
            step = next_step(self.state(), iterations, False)
            if not isinstance(step, Step):
                assert step.startswith("done") and self.state().stale == {}, step
                return
            self.run(step)
        raise AssertionError("the loop did not finish")

    def state(self):
        return read_loop_state(self.instance, self.graph, self.prefix)

    def materializations(self, name: str, partition: int) -> int:
        return len(self.instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([*self.prefix, name]), asset_partitions=[str(partition)]), limit=100).records)


@pytest.mark.parametrize("prefix", [(), ("exp",)])
def test_what_was_built_on_a_replaced_model_is_stale_at_any_distance(prefix):
    with dg.instance_for_test() as instance:
        loop = Loop(instance, prefix)
        loop.complete()

        loop.run(Step("iteration", "1", ("finetune",)))  # a launchpad re-run of finetune[1]: a new policy[1]

        # Dagster marks the direct consumers only (the webserver's badge)
        direct = stale_causes(instance, loop.graph, [(n, p) for n in (*ITERATION_ASSETS, "evaluation")
                                                     for p in (0, 1, 2)], prefix)
        assert set(direct) == {("samples", 2), ("evaluation", 1)}
        # restem's view: everything built on them, each with its root named
        stale = stale_materializations(instance, loop.graph, prefix)
        assert stale == AFTER_A_LAUNCHPAD_RERUN
        assert loop.state().stale == stale
        message = next_step(loop.state(), 2, False)
        assert message.startswith("stale: evaluation[1]") and "--refresh-stale" in message
        assert next_step(loop.state(), 1, False).startswith("stale: evaluation[1]")  # evaluation[1] is in range


def test_refreshing_the_stale_steps_keeps_the_new_model_and_leaves_nothing_stale():
    """`restem run --refresh-stale`'s loop over the real resolver: it redoes exactly the stale steps, in order,
    and finetune[1] (the launchpad's run, what made them stale) is not redone."""
    with dg.instance_for_test() as instance:
        loop = Loop(instance, ())
        loop.complete()
        loop.run(Step("iteration", "1", ("finetune",)))
        finetunes_of_1 = loop.materializations("finetune", 1)
        ran = []
        while isinstance(step := next_step(loop.state(), 2, False, refresh_stale=True), Step):
            assert len(ran) < 10, ran
            ran.append(step)
            loop.run(step)
        assert step.startswith("done"), step
        assert ran == [Step("evaluate", "1"), Step("iteration", "2"), Step("evaluate", "2")]
        assert loop.materializations("finetune", 1) == finetunes_of_1
        assert loop.state().stale == {}


def test_redoing_part_of_an_iteration_makes_only_what_followed_it_stale():
    """samples[2] re-run alone: rewards[2] is Dagster's direct consumer, the rest of iteration 2 and evaluation[2]
    are in the closure; samples[2] itself, iteration 1 and evaluation[1] stay current."""
    with dg.instance_for_test() as instance:
        loop = Loop(instance, ())
        loop.complete()
        loop.run(Step("iteration", "2", ("samples",)))
        stale = loop.state().stale
        assert set(stale) == {("rewards", 2), ("sft_set", 2), ("finetune", 2), ("evaluation", 2)}
        # the root as Dagster words it: an asset without a code version "has a new materialization"
        assert stale[("evaluation", 2)] == "built on stale policy[2] (root: samples[2] has a new materialization)"
        assert next_step(loop.state(), 2, False, refresh_stale=True) == Step("iteration", "2", ("rewards", "sft_set",
                                                                                                "finetune"))
