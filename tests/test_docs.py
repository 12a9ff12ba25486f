"""The README and docs/ stay true: links resolve, every command they show parses as written, and
what they list (environment variables, tables, profiles) is what the code has.

Every `.venv/bin/restem …` command in README.md and docs/*.md (fenced blocks and inline code) is
parsed by the real `restem` argument parser, with the command functions replaced by a recorder, so
nothing runs: unknown flags fail, `restem sql NAME` must name a query in sql/, `--profile` a profile,
`--set` on `restem run` a resource field with a valid value, and `--set` on `restem sql` a variable
the query reads. Every `make TARGET` must be a Makefile target. The ablation block itself runs for
real in tests/test_experiments_e2e.py (slow).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted((REPO / "docs").glob("*.md"))
USER_DOCS = [REPO / "README.md", *DOCS]  # the files whose commands a user is told to run
LINKED_DOCS = [*USER_DOCS, REPO / "ARCHITECTURE.md", REPO / "bench" / "README.md"]
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def code_texts(path: Path) -> list[str]:
    """Each line of each fenced block, and each inline code span outside fences."""
    text = path.read_text()
    lines = [line for block in FENCE.findall(text) for line in block.splitlines()]
    return lines + INLINE.findall(FENCE.sub("", text))


def restem_commands(path: Path) -> list[str]:
    out = []
    for text in code_texts(path):
        text = text.split(" # ")[0].strip()
        words = shlex.split(text) if text else []
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
            words = words[1:]
        if words and words[0] == ".venv/bin/restem":
            out.append(shlex.join(words))
    return out


def all_commands() -> list[tuple[str, str]]:
    return [(rel(path), command) for path in USER_DOCS for command in restem_commands(path)]


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_readme_fits_on_a_screen():
    lines = (REPO / "README.md").read_text().splitlines()
    # 140: the two commands, the requirements and every result the issues ask the README to show
    # (issue 20: the E-step ablation per configuration and iteration) on about two screens
    assert len(lines) <= 140, f"README.md has {len(lines)} lines; move reference material to docs/"


@pytest.mark.parametrize("path", LINKED_DOCS, ids=rel)
def test_relative_links_resolve(path):
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {rel(dest)}")
    assert not broken, f"{rel(path)}: " + "; ".join(broken)


def test_docs_show_the_commands_the_readme_showed():
    """The commands a user runs are somewhere in README.md or docs/ (the ablation block, the code demo)."""
    commands = {command for _, command in all_commands()}
    for expected in (
        ".venv/bin/restem run --experiment prop2diff --set rest.sampling=prop2diff --set rest.hints=false --iterations 5",
        ".venv/bin/restem sql coverage_per_round",
        ".venv/bin/restem sql compare_experiments",
        ".venv/bin/restem run --iterations 3 --profile ci",
        ".venv/bin/restem sql --list",
        ".venv/bin/restem run --from-iteration 2",
        ".venv/bin/restem rescore --iteration 1",
        ".venv/bin/restem transfer --profile code --data-root data/code --dagster-home data/code/dagster_home",
        ".venv/bin/restem sql samples_per_problem --set iteration=1",
    ):
        assert expected in commands, f"no doc shows `{expected}`"


@pytest.fixture
def parse(monkeypatch):
    """`restem` argv -> the parsed arguments, through the real parser, running nothing."""
    from dagster_project import cli

    parsed = []
    for name in dir(cli):
        if name.startswith("cmd_") and callable(getattr(cli, name)):
            monkeypatch.setattr(cli, name, lambda args, _name=name: parsed.append((_name, args)) or 0)

    def run(argv: list[str]):
        try:
            rc = cli.main(argv)
        except SystemExit as exc:  # argparse: unknown flag, missing argument
            raise AssertionError(f"restem {shlex.join(argv)}: the parser exits with {exc.code}") from None
        assert rc == 0 and parsed, f"restem {shlex.join(argv)} did not reach a command"
        return parsed.pop()

    return run


@pytest.mark.parametrize("where,command", all_commands(), ids=lambda v: v if "restem" in v else None)
def test_every_doc_command_parses(where, command, parse):
    from restem_assets.assets.resources import build_resources
    from restem_assets.environment import Settings
    from restem_assets.profiles import PROFILES
    from restem_assets.experiments import parse_overrides

    name, args = parse(shlex.split(command)[1:])
    if getattr(args, "profile", None) is not None:
        assert args.profile in PROFILES, f"{where}: `{command}`: no profile {args.profile!r}"
    if name == "cmd_sql" and not args.list:
        query = REPO / "sql" / f"{args.query}.sql"
        assert query.is_file(), f"{where}: `{command}`: no query sql/{args.query}.sql"
        for param in args.params:
            var = param.partition("=")[0]
            assert f"getvariable('{var}')" in query.read_text(), f"{where}: `{command}`: {query.name} reads no {var}"
    if name == "cmd_run" and args.overrides:
        build_resources(Settings(profile=args.profile or "default"), parse_overrides(args.overrides))


@pytest.mark.parametrize("path", USER_DOCS, ids=rel)
def test_every_make_target_exists(path):
    targets = make_targets()
    used = {m for text in code_texts(path) for m in re.findall(r"(?:^|\s)make ([a-z][a-z-]*)", text)}
    assert used <= targets, f"{rel(path)} names make targets the Makefile lacks: {sorted(used - targets)}"


def test_configuration_doc_lists_every_environment_variable():
    """Every RESTEM_* variable restem, its deployments, scripts or benchmarks read is in docs/configuration.md,
    and every one listed there is read somewhere."""
    sources = [p for d in ("restem_assets", "dagster_project", "deploy", "scripts", "bench")
               for p in (REPO / d).rglob("*") if p.is_file() and p.suffix in {".py", ".sh", ".yaml", ".yml"}]
    sources.append(REPO / "Makefile")
    read = {v for p in sources for v in re.findall(r"RESTEM_[A-Z_]*[A-Z]", p.read_text(errors="replace"))}
    tests = {v for p in (REPO / "tests").glob("*.py") if p.name != "test_docs.py"
             for v in re.findall(r"RESTEM_[A-Z_]*[A-Z]", p.read_text())}
    doc = (REPO / "docs" / "configuration.md").read_text()
    listed = set(re.findall(r"RESTEM_[A-Z_]*[A-Z]", doc))
    assert read <= listed, f"docs/configuration.md does not list {sorted(read - listed)}"
    assert listed <= read | tests, f"docs/configuration.md lists variables nothing reads: {sorted(listed - read - tests)}"
    assert "DAGSTER_HOME" in doc


def test_configuration_doc_lists_every_profile():
    from restem_assets.profiles import PROFILES

    doc = (REPO / "docs" / "configuration.md").read_text()
    missing = [name for name in PROFILES if f"| `{name}` |" not in doc]
    assert not missing, f"docs/configuration.md's profile table lacks {missing}"


def test_every_table_is_documented_and_cleaned():
    """docs/data.md lists every table restem writes, and `make clean` removes each of them from data/."""
    from restem_assets.reporting.analytics import TABLES

    doc = (REPO / "docs" / "data.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^clean:\n((?:\t.*\n?)+)", makefile, re.M)
    assert recipe, "the Makefile has no clean target"
    removed = set(re.findall(r"data/(\S+)", recipe.group(1).replace("\\\n", " ")))
    for table in TABLES:
        assert f"`{table.name}`" in doc, f"docs/data.md does not list the table {table.name}"
        assert table.name in removed, f"make clean leaves data/{table.name} behind"
    for other in ("models", "reports", ".staging", ".locks", "dagster_home", "experiment=*", "code"):
        assert other in removed, f"make clean leaves data/{other} behind"
