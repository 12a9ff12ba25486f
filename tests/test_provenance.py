"""Each verifier's version covers every source file and package version its verdicts depend on."""

import importlib.metadata
from pathlib import Path

import pytest

import restem_assets.rewards.math as math_reward
from restem_assets.rewards import provenance
from restem_assets.rewards.provenance import (
    MATH_PACKAGES,
    REASONING_GYM_PACKAGE,
    REASONING_GYM_SOURCES,
    clear_cache,
    runtime_requirements,
    verifier_version,
)

VERIFIERS = ("math", "reasoning_gym", "code")


@pytest.fixture(autouse=True)
def fresh_versions():
    """Every test starts and ends with nothing cached, so a faked file or package never leaks out."""
    clear_cache()
    yield
    clear_cache()


def versions() -> dict[str, str]:
    clear_cache()
    return {v: verifier_version(v) for v in VERIFIERS}


def fake_package_version(monkeypatch, name: str) -> None:
    """Make importlib.metadata report another version of distribution `name` (and only of it)."""
    real = importlib.metadata.version

    def version(dist: str) -> str:
        return "999.0.fake" if dist.lower().replace("_", "-") == name.lower().replace("_", "-") else real(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_versions_are_short_hashes_stable_within_and_across_computations():
    first = {v: verifier_version(v) for v in VERIFIERS}
    assert all(len(h) == 12 and int(h, 16) >= 0 for h in first.values())
    assert len(set(first.values())) == 3
    assert {v: verifier_version(v) for v in VERIFIERS} == first  # cached
    assert versions() == first  # recomputed from the same files and packages: the same
    with pytest.raises(ValueError, match="unknown verifier 'nosuch'"):
        verifier_version("nosuch")


def test_the_cache_holds_until_cleared(monkeypatch):
    before = verifier_version("math")
    fake_package_version(monkeypatch, "sympy")
    assert verifier_version("math") == before  # computed once per process
    clear_cache()
    assert verifier_version("math") != before


@pytest.mark.parametrize("package", MATH_PACKAGES)
def test_a_math_package_upgrade_changes_math_and_reasoning_gym(monkeypatch, package):
    before = versions()
    fake_package_version(monkeypatch, package)
    after = versions()
    assert after["math"] != before["math"]
    assert after["reasoning_gym"] != before["reasoning_gym"]  # it extracts answers with the math code
    assert after["code"] == before["code"]
    monkeypatch.undo()
    assert versions() == before


def test_reasoning_gym_covers_its_package_and_what_its_graders_import(monkeypatch):
    requirements = runtime_requirements(REASONING_GYM_PACKAGE)
    assert "sympy" in requirements and not any(r in requirements for r in ("pytest", "fastapi", "typer"))
    before = versions()
    for package in (REASONING_GYM_PACKAGE, *requirements):
        fake_package_version(monkeypatch, package)
        after = versions()
        assert after["reasoning_gym"] != before["reasoning_gym"], package
        assert after["code"] == before["code"], package
        monkeypatch.undo()
    assert versions() == before


def test_a_missing_package_is_a_version_of_its_own(monkeypatch):
    before = versions()
    real = importlib.metadata.version

    def version(dist: str) -> str:
        if dist == "math-verify":
            raise importlib.metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert provenance.package_version("math-verify") == "absent"
    assert versions()["math"] != before["math"]


@pytest.mark.parametrize("name", sorted(REASONING_GYM_SOURCES))
def test_reasoning_gym_covers_its_grading_source_files(monkeypatch, tmp_path, name):
    """rewards/reasoning_gym.py and tasks/reasoning_gym_tasks.py (score_reasoning_gym and the entry decoding)."""
    before = versions()
    original = REASONING_GYM_SOURCES[name]
    copy = tmp_path / original.name
    copy.write_bytes(original.read_bytes())
    monkeypatch.setitem(REASONING_GYM_SOURCES, name, copy)
    assert versions() == before  # the same bytes elsewhere: the same version
    copy.write_bytes(original.read_bytes() + b"\n# a grading fix\n")
    after = versions()
    assert after["reasoning_gym"] != before["reasoning_gym"]
    assert (after["math"], after["code"]) == (before["math"], before["code"])


def test_the_score_function_lives_in_a_covered_file():
    from restem_assets.tasks import reasoning_gym_tasks

    covered = {path.resolve() for path in REASONING_GYM_SOURCES.values()}
    assert Path(reasoning_gym_tasks.score_reasoning_gym.__code__.co_filename).resolve() in covered
    from restem_assets.rewards import reasoning_gym

    assert Path(reasoning_gym.__file__).resolve() in covered


@pytest.mark.parametrize("source", ["math", "latex_boxed"])
def test_math_covers_its_source_files(monkeypatch, tmp_path, source):
    before = versions()
    if source == "math":
        copy = tmp_path / "math.py"
        copy.write_text(open(math_reward.__file__, encoding="utf-8").read() + "\n# edited\n", encoding="utf-8")
        monkeypatch.setattr(math_reward, "__file__", str(copy))
    else:
        original = math_reward.inspect.getsourcefile(math_reward.last_boxed)
        copy = tmp_path / "latex_boxed.py"
        copy.write_text(open(original, encoding="utf-8").read() + "\n# edited\n", encoding="utf-8")
        real = math_reward.inspect.getsourcefile
        monkeypatch.setattr(math_reward.inspect, "getsourcefile",
                            lambda obj: str(copy) if obj is math_reward.last_boxed else real(obj))
    after = versions()
    assert after["math"] != before["math"] and after["reasoning_gym"] != before["reasoning_gym"]
    assert after["code"] == before["code"]
    monkeypatch.undo()
    assert versions() == before


def test_code_covers_its_sources_and_the_python_it_runs_programs_with(monkeypatch, tmp_path):
    before = versions()
    monkeypatch.setattr(provenance.platform, "python_version", lambda: "3.99.0")
    after = versions()
    assert after["code"] != before["code"] and (after["math"], after["reasoning_gym"]) == (
        before["math"], before["reasoning_gym"])
    monkeypatch.undo()
    code_dir = provenance.REWARDS_DIR / "code"
    copy = tmp_path / "rewards" / "code"
    copy.mkdir(parents=True)
    for path in code_dir.glob("*.py"):
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / "judge.py").write_bytes((code_dir / "judge.py").read_bytes() + b"\n# edited\n")
    monkeypatch.setattr(provenance, "REWARDS_DIR", tmp_path / "rewards")
    monkeypatch.setattr(provenance, "PACKAGE_DIR", tmp_path)  # hashed under the same names: rewards/code/judge.py, ...
    assert versions()["code"] != before["code"]
    (copy / "judge.py").write_bytes((code_dir / "judge.py").read_bytes())
    assert versions()["code"] == before["code"]  # same names and bytes: same version
