"""What restem takes from Dagster beyond its public API, checked so that a Dagster upgrade which breaks it fails here.

ARCHITECTURE.md, "Dagster internals we still use", lists every private import and the test below that
exercises it; the run-status groups and the data-version tag are spelled out from public names in restem
and compared here with what Dagster does.
"""

import ast
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.run_guard import IN_PROGRESS_RUN_STATUSES
from restem_assets.assets.namespace import prefix_assets
from restem_assets.assets.policy_lineage import NOT_FINISHED_STATUSES, report_policy
from restem_assets.assets.staleness import asset_graph, stale_causes, stale_materializations

ROOT = Path(__file__).resolve().parents[1]
S = dg.DagsterRunStatus

# Every `dagster._...` import outside tests/ (file, module, names). A new one needs a row in ARCHITECTURE.md
# ("Dagster internals we still use") and a test here.
ALLOWED_INTERNALS = {
    ("restem_assets/assets/staleness.py", "dagster._core.asset_graph_view.asset_graph_view",
     ("AssetGraphView", "TemporalContext")),
    ("restem_assets/assets/staleness.py", "dagster._core.definitions.data_version",
     ("CachingStaleStatusResolver", "StaleStatus")),
    ("restem_assets/assets/staleness.py", "dagster._core.definitions.assets.graph.asset_graph", ("AssetGraph",)),
}


def internal_imports() -> set[tuple[str, str, tuple[str, ...]]]:
    found = set()
    for base in ("restem_assets", "dagster_project", "deploy", "bench", "scripts"):
        for path in sorted((ROOT / base).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                rel = str(path.relative_to(ROOT))
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dagster._"):
                    found.add((rel, node.module, tuple(a.name for a in node.names)))
                elif isinstance(node, ast.Import):
                    found |= {(rel, a.name, ()) for a in node.names if a.name.startswith("dagster._")}
    return found


def test_no_dagster_internals_beyond_the_documented_ones():
    assert internal_imports() == ALLOWED_INTERNALS
    section = (ROOT / "ARCHITECTURE.md").read_text().split("## Dagster internals we still use", 1)[1]
    for _, module, names in ALLOWED_INTERNALS:
        assert module in section and all(name in section for name in names), module


def test_every_run_status_is_grouped():
    """A status Dagster adds must be placed deliberately: in flight (waited for) or finished (not)."""
    finished = {S.SUCCESS, S.FAILURE, S.CANCELED, S.MANAGED}
    assert set(NOT_FINISHED_STATUSES) | finished == set(S) and not set(NOT_FINISHED_STATUSES) & finished
    assert set(IN_PROGRESS_RUN_STATUSES) == set(NOT_FINISHED_STATUSES) - {S.QUEUED, S.NOT_STARTED}
    assert all(isinstance(s, S) for s in (*NOT_FINISHED_STATUSES, *IN_PROGRESS_RUN_STATUSES))


def test_run_status_groups_match_dagsters_own():
    """restem's groups were Dagster's private lists; while those exist, they must agree."""
    try:
        from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES as DAGSTER_IN_PROGRESS
        from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES as DAGSTER_NOT_FINISHED
    except ImportError:
        pytest.skip("Dagster no longer has these private lists; test_every_run_status_is_grouped still holds")
    assert set(NOT_FINISHED_STATUSES) == set(DAGSTER_NOT_FINISHED)
    assert set(IN_PROGRESS_RUN_STATUSES) == set(DAGSTER_IN_PROGRESS)


@pytest.mark.parametrize("prefix", [(), ("exp",)])
def test_a_new_policy_version_makes_what_sampled_it_stale(prefix):
    """The data-version tag `report_policy` writes is read by Dagster, and the private stale-status resolver
    (AssetGraphView, TemporalContext, CachingStaleStatusResolver, StaleStatus) reports it, cause named."""
    parts = dg.StaticPartitionsDefinition(["0", "1"])
    version = {"value": "v1"}

    @dg.asset(partitions_def=parts)
    def finetune(context: dg.AssetExecutionContext):
        report_policy(context, int(context.partition_key), "/models/m", version=version["value"])

    @dg.asset(partitions_def=parts, deps=["policy"])
    def samples():
        return None

    defs = dg.Definitions(assets=prefix_assets([dg.AssetSpec("policy", partitions_def=parts), finetune, samples],
                                               prefix))
    graph, job = defs.resolve_asset_graph(), defs.resolve_implicit_global_asset_job_def()

    with dg.instance_for_test() as instance:
        def run(name):
            assert job.execute_in_process(instance=instance, partition_key="1",
                                          asset_selection=[dg.AssetKey([*prefix, name])]).success

        run("finetune")
        run("samples")
        assert stale_causes(instance, graph, [("samples", 1)], prefix) == {}
        run("finetune")  # the same model again: same data version, nothing stale
        assert stale_causes(instance, graph, [("samples", 1)], prefix) == {}
        version["value"] = "v2"
        run("finetune")
        causes = stale_causes(instance, graph, [("samples", 1)], prefix)
        assert list(causes) == [("samples", 1)] and causes[("samples", 1)].endswith("(policy[1])")
        assert "data version" in causes[("samples", 1)]
        assert stale_materializations(instance, graph, prefix) == causes


def test_restems_asset_graph_is_built_with_the_experiments_keys():
    """`staleness.asset_graph` (the private AssetGraph.from_assets) has every asset under the prefix and
    the stale-status resolver runs on it."""
    graph = asset_graph(("exp",))
    keys = graph.get_all_asset_keys()
    assert dg.AssetKey(["exp", "samples"]) in keys and dg.AssetKey(["exp", "policy"]) in keys
    assert all(k.path[0] == "exp" for k in keys)
    assert dg.AssetKey(["exp", "policy"]) in graph.get(dg.AssetKey(["exp", "samples"])).parent_keys
    with dg.instance_for_test() as instance:
        assert stale_materializations(instance, graph, ("exp",)) == {}
