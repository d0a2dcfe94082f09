from __future__ import annotations

import contextlib
import csv
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.conftest import DEMO_SCHOOL_MODULES
from tests.integration.clients import User, login, mautrix_client
from tests.integration.harness import (
    Deployment,
    PostgresCluster,
    demo_roster_folder,
    sferumctl,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A module that uses `demo_school` must be in tests/conftest.py's DEMO_SCHOOL_MODULES, or
    the xdist workers would each build the school for it once more."""
    for item in items:
        module = item.path.stem
        if "demo_school" in getattr(item, "fixturenames", ()) and (
            module not in DEMO_SCHOOL_MODULES
        ):
            raise pytest.UsageError(
                f"{item.nodeid} uses demo_school: add {module} to DEMO_SCHOOL_MODULES"
                " in tests/conftest.py"
            )


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


SERVER = "school.test"


@attrs.frozen
class School:
    """The demo school on a running server: every person of the roster has an account."""

    deployment: Deployment
    roster: DemoRoster
    accounts: dict[str, dict[str, Any]]  # person -> {"user_id", "password"}
    first_import: str

    def user_id(self, person: str) -> str:
        return str(self.accounts[person]["user_id"])

    async def login(self, person: str) -> User:
        account = self.accounts[person]
        return await login(self.deployment.base_url, account["user_id"], account["password"])

    def alias(self, kind: str, scope: str) -> str:
        return f"#{kind}-{scope}:{SERVER}"

    def mautrix(self, person: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """The person signed in with mautrix-python, a client we did not write."""
        account = self.accounts[person]
        return mautrix_client(self.deployment.base_url, account["user_id"], account["password"])


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def demo_school(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    demo_roster: DemoRoster,
) -> Iterator[School]:
    """One server per database for every module that needs the demo school as it is shipped.

    Tests that change it (the roster, a password, a room) put it back before they end.
    """
    postgres = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    deployment = make_deployment(
        tmp_path_factory.mktemp(request.param), request.param, postgres, SERVER
    )
    deployment.init()
    # Reports reach the staff room in seconds (test_school_space.py), not the default 15.
    deployment.override_module("60-reports", "reports", {"check_interval_seconds": 5})
    deployment.start()
    try:
        imported = sferumctl("roster", "import", str(deployment.dir), str(demo_roster_folder()))
        accounts = deployment.issue(*demo_roster.roles)
        report = deployment.reconcile()
        assert report["failures"] == 0, (report, deployment.log_tail())
        yield School(deployment, demo_roster, accounts, imported.stdout)
    finally:
        deployment.stop()
