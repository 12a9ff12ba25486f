"""Snapshot of the asset graph: keys, groups, partitions, dependencies, checks, pools.

A change to the graph must be deliberate: regenerate with
`RESTEM_UPDATE_SNAPSHOTS=1 pytest tests/test_asset_graph.py` and review the diff.
"""

import json
import os
from pathlib import Path

import dagster as dg

from dagster_project.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph_summary() -> dict:
    graph = defs.resolve_asset_graph()
    out = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        pdef = node.partitions_def
        out[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": None if pdef is None else f"{type(pdef).__name__}[{pdef.get_partition_keys()[0]}..]",
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
            "pools": sorted(node.pools or []),
            "materializable": node.is_materializable,
        }
    return out


def test_asset_graph_matches_snapshot():
    current = graph_summary()
    if os.environ.get("RESTEM_UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_definitions_load_and_jobs_resolve():
    for name in ("setup", "iteration", "estep", "evaluate", "transfer", "report_progress"):
        assert defs.resolve_job_def(name) is not None
    assert defs.resolve_sensor_def("continue_rest_loop").default_status == dg.DefaultSensorStatus.STOPPED


def test_samples_depend_on_previous_policy_partition():
    graph = defs.resolve_asset_graph()
    from restem_assets.assets.partitions import previous_policy_mapping

    mapped = previous_policy_mapping.get_upstream_mapped_partitions_result_for_partitions(
        graph.get(dg.AssetKey("samples")).partitions_def.subset_with_partition_keys(["3"]),
        None,
        graph.get(dg.AssetKey("policy")).partitions_def,
    )
    assert set(mapped.partitions_subset.get_partition_keys()) == {"2"}
