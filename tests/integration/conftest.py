from __future__ import annotations

import csv
import gc
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.integration.harness import Deployment, PostgresCluster, demo_roster_folder


@pytest.fixture(autouse=True)
def collect_garbage_after_each_test() -> Iterator[None]:
    """Run the finalizers of a test's garbage at its end, not at some random later moment.

    aiortc leaves a closing peer connection's task to fail when the loop stops under it, and
    its "exception never retrieved" log is written when the task is collected. Collected
    inside a later `ast.parse` (pytest rewriting a late import), the traceback formatting
    parses too, and CPython 3.11.7's AST constructor then fails with "recursion depth
    mismatch" (gh-106905, fixed in 3.11.8), crashing the whole run at its summary.
    """
    yield
    gc.collect()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@attrs.frozen
class DemoRoster:
    """Who is who in the shipped demo roster, read from its CSV files."""

    roles: dict[str, str]  # person -> OneRoster role
    students: dict[str, set[str]]  # class -> pupils
    teachers: dict[str, set[str]]  # class -> teachers
    agents: dict[str, set[str]]  # person -> agentSourcedIds

    @classmethod
    def load(cls, folder: Path | None = None) -> DemoRoster:
        folder = folder or demo_roster_folder()
        roles: dict[str, str] = {}
        agents: dict[str, set[str]] = {}
        with (folder / "users.csv").open(encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                roles[row["sourcedId"]] = row["role"]
                agents[row["sourcedId"]] = {a for a in row["agentSourcedIds"].split(",") if a}
        students: dict[str, set[str]] = {}
        teachers: dict[str, set[str]] = {}
        with (folder / "enrollments.csv").open(encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                target = students if row["role"] == "student" else teachers
                target.setdefault(row["classSourcedId"], set()).add(row["userSourcedId"])
        return cls(roles, students, teachers, agents)

    def guardians_of(self, pupil: str) -> set[str]:
        found = {a for a in self.agents[pupil] if self.roles.get(a) in ("guardian", "parent")}
        found |= {
            g
            for g, kids in self.agents.items()
            if pupil in kids and self.roles.get(g) in ("guardian", "parent")
        }
        return found

    def of_role(self, *roles: str) -> list[str]:
        return sorted(p for p, r in self.roles.items() if r in roles)


@pytest.fixture(scope="session")
def demo_roster() -> DemoRoster:
    return DemoRoster.load()


def make_deployment(
    tmp: Path, backend: str, postgres: PostgresCluster | None, server_name: str
) -> Deployment:
    database = "sqlite"
    if backend == "postgresql":
        assert postgres is not None
        database = postgres.create_database(f"hs_{server_name.replace('.', '_')}")
    return Deployment(tmp / server_name, server_name, database)
