"""Package discovery (the rest of the metadata is in pyproject.toml).

Every package under `dagster_project/` and `restem_assets/` is found by itself; `sql/` stays a
top-level folder and installs as the package `restem_sql` (data files only), which pyproject's
`packages.find` cannot express because it renames the folder.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["dagster_project", "dagster_project.*", "restem_assets", "restem_assets.*"])
    + ["restem_sql"],
    package_dir={"restem_sql": "sql"},
)
