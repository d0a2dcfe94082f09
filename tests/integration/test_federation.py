"""Three school servers federating over loopback with verified TLS (docs/rooms-and-rules.md,
docs/architecture.md).

A (127.0.0.1) and B (127.0.0.2) list each other as partner schools; C (127.0.0.3) lists nobody
and nobody lists it. Each is a full deployment made by `sferumctl init` with its own roster. Only
the staff room crosses servers, and only teachers and staff of listed partners get in.

A runs as Synapse workers on PostgreSQL (`init --workers 1`), B and C as one process on SQLite:
other servers reach A through nginx's TLS port and its federation reader, and A's transactions
leave from its federation sender, which the first test checks in their logs.
"""

from __future__ import annotations

import asyncio
import csv
import datetime
import ipaddress
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import pytest
import signedjson.key
import signedjson.sign
import yaml

from synapse_sferum.ctl.demo import DemoCalendar, SchoolYear
from synapse_sferum.ctl.workers import internal_ports
from tests.demo import today
from tests.integration.clients import Reply, User, login, nio_client, wait_for_text
from tests.integration.harness import Deployment, PostgresCluster, free_ports, sferumctl

pytestmark = pytest.mark.integration

HOSTS = {"a": "127.0.0.1", "b": "127.0.0.2", "c": "127.0.0.3"}
PARTNERS = {"a": ("b",), "b": ("a",), "c": ()}
ON_WORKERS = "a"  # a partner: federation in and out goes through its workers


# -- rosters ------------------------------------------------------------------------------------

MANIFEST = {
    "manifest.version": "1.0",
    "oneroster.version": "1.1",
    "file.academicSessions": "bulk",
    "file.categories": "absent",
    "file.classes": "bulk",
    "file.classResources": "absent",
    "file.courses": "bulk",
    "file.courseResources": "absent",
    "file.demographics": "bulk",
    "file.enrollments": "bulk",
    "file.lineItems": "absent",
    "file.orgs": "bulk",
    "file.resources": "absent",
    "file.results": "absent",
    "file.users": "bulk",
    "source.systemName": "synapse-sferum federation tests",
    "source.systemCode": "sferum-federation-tests",
}


def _columns(header: str) -> list[str]:
    return header.split(",")


USER_COLUMNS = _columns(
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
    "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password"
)
DEMOGRAPHICS_COLUMNS = _columns(
    "sourcedId,status,dateLastModified,birthDate,sex,americanIndianOrAlaskaNative,asian,"
    "blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,"
    "demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,countryOfBirthCode,"
    "stateOfBirthAbbreviation,cityOfBirth,publicSchoolResidenceStatus"
)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_roster(folder: Path, tag: str, phone_block: int) -> dict[str, str]:
    """A one-school OneRoster 1.1 CSV folder; returns person sourcedId -> OneRoster role.

    School `school-<tag>` has a principal, two teachers, a homeroom class `<tag>5` with two
    pupils and a guardian of the first pupil.
    """
    folder.mkdir(parents=True)
    org, cls, year, course = f"school-{tag}", f"{tag}5", "school-year", f"course-{tag}5"
    school_year = SchoolYear.of(today())
    people = [
        (f"staff-{tag}", "administrator", "Ольга", "Директорова", ""),
        (f"t-{tag}-1", "teacher", "Марина", "Учителева", ""),
        (f"t-{tag}-2", "teacher", "Павел", "Преподов", ""),
        (f"p-{tag}-1", "student", "Петя", "Ученичков", f"g-{tag}-1"),
        (f"p-{tag}-2", "student", "Маша", "Школьникова", ""),
        (f"g-{tag}-1", "parent", "Анна", "Ученичкова", f"p-{tag}-1"),
    ]
    _write_csv(
        folder / "manifest.csv",
        ["propertyName", "value"],
        [{"propertyName": k, "value": v} for k, v in MANIFEST.items()],
    )
    _write_csv(
        folder / "academicSessions.csv",
        _columns(
            "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,"
            "schoolYear"
        ),
        [
            {
                "sourcedId": year,
                "title": school_year.title,
                "type": "schoolYear",
                "startDate": str(school_year.start),
                "endDate": str(school_year.end),
                "schoolYear": str(school_year.end.year),
            }
        ],
    )
    _write_csv(
        folder / "orgs.csv",
        _columns("sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId"),
        [{"sourcedId": org, "name": f"Школа {tag.upper()}", "type": "school"}],
    )
    _write_csv(
        folder / "courses.csv",
        _columns(
            "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,"
            "orgSourcedId,subjects,subjectCodes"
        ),
        [
            {
                "sourcedId": course,
                "schoolYearSourcedId": year,
                "title": "Классное руководство, 5 класс",
                "courseCode": f"KR-{tag}",
                "grades": "05",
                "orgSourcedId": org,
            }
        ],
    )
    _write_csv(
        folder / "classes.csv",
        _columns(
            "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,"
            "location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods"
        ),
        [
            {
                "sourcedId": cls,
                "title": "5А",
                "grades": "05",
                "courseSourcedId": course,
                "classCode": "5А",
                "classType": "homeroom",
                "schoolSourcedId": org,
                "termSourcedIds": year,
            }
        ],
    )
    users = []
    for n, (pid, role, given, family, agents) in enumerate(people):
        users.append(
            {
                "sourcedId": pid,
                "enabledUser": "true",
                "orgSourcedIds": org,
                "role": role,
                "username": pid.replace("-", "."),
                "givenName": given,
                "familyName": family,
                "phone": f"+7916{phone_block:03d}{n:04d}",
                "agentSourcedIds": agents,
            }
        )
    _write_csv(folder / "users.csv", USER_COLUMNS, users)
    _write_csv(
        folder / "demographics.csv",
        DEMOGRAPHICS_COLUMNS,
        [
            {
                "sourcedId": pid,
                "birthDate": str(DemoCalendar(today()).born(11, 3, 14)),  # a minor
                "sex": "male",
                "countryOfBirthCode": "RU",
            }
            for pid, role, *_ in people
            if role == "student"
        ],
    )
    enrollment_columns = _columns(
        "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
        "primary,beginDate,endDate"
    )
    enrolled = [(f"t-{tag}-1", "teacher", "true"), (f"t-{tag}-2", "teacher", "false")]
    enrolled += [(f"p-{tag}-1", "student", "false"), (f"p-{tag}-2", "student", "false")]
    _write_csv(
        folder / "enrollments.csv",
        enrollment_columns,
        [
            {
                "sourcedId": f"e-{cls}-{pid}",
                "classSourcedId": cls,
                "schoolSourcedId": org,
                "userSourcedId": pid,
                "role": role,
                "primary": primary,
                "beginDate": str(school_year.start),
                # no endDate: the people stay all year round, summer too (rooms-and-rules.md)
            }
            for pid, role, primary in enrolled
        ],
    )
    return {pid: role for pid, role, *_ in people}


# -- certificates -------------------------------------------------------------------------------


def write_certificates(
    folder: Path, hosts: list[str]
) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """A test CA and, per IP, a server certificate it signed (subjectAltName=IP).

    Returns the CA's certificate and host -> (certificate, key), all PEM files.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=7))

    def pem_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sferum federation test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = folder / "ca.crt"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    out = {}
    for host in hosts:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_path = folder / f"{host}.crt"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[host] = (cert_path, pem_key(key, folder / f"{host}.key"))
    return ca_path, out


# -- servers ------------------------------------------------------------------------------------


def free_port_on(host: str, taken: set[int], count: int = 1) -> int:
    """The first of `count` consecutive TCP ports free on `host` right now, none of them among
    `taken` (which they join)."""
    while True:
        first = free_ports(count, host=host)
        block = set(range(first, first + count))
        if not block & taken:
            taken |= block
            return first


@attrs.define
class Server:
    tag: str
    host: str
    federation_port: int
    deployment: Deployment
    roles: dict[str, str]
    ca: Path  # the test CA that signed every server's federation certificate
    accounts: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        return self.deployment.server_name

    @property
    def org(self) -> str:
        return f"school-{self.tag}"

    @property
    def klass(self) -> str:
        return f"{self.tag}5"

    def teacher(self, n: int = 1) -> str:
        return f"t-{self.tag}-{n}"

    def pupil(self, n: int = 1) -> str:
        return f"p-{self.tag}-{n}"

    def user_id(self, person: str) -> str:
        return str(self.accounts[person]["user_id"])

    def alias(self, kind: str, scope: str) -> str:
        return f"#{kind}-{scope}:{self.name}"

    async def login(self, person: str) -> User:
        account = self.accounts[person]
        return await login(self.deployment.base_url, account["user_id"], account["password"])

    async def log_line(self, process: str, pattern: str, timeout: float = 10) -> str:
        """The first line of a Synapse process's log that matches the regex `pattern`. A
        request's line is written once it has been answered, so it may come a moment after the
        client saw its effect."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.deployment.synapse_log(process)
            found = next((ln for ln in log.splitlines() if re.search(pattern, ln)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no line of {process}'s log has {pattern!r}")
            await asyncio.sleep(0.2)


def _parallel(fn: Callable[[Server], Any], servers: list[Server]) -> list[Any]:
    with ThreadPoolExecutor(len(servers)) as pool:
        return list(pool.map(fn, servers))


def _init(server: Server, ca: Path) -> None:
    server.deployment.init()
    (server.deployment.dir / "conf.d" / "60-federation.yaml").write_text(
        yaml.safe_dump(
            {
                # IP-literal server names go through Synapse's blocklist, which covers loopback.
                "ip_range_blacklist": [],
                "federation_verify_certificates": True,
                "federation_custom_ca_list": [str(ca)],
                # These tests send many invites and joins in a row, by people and by servers.
                "rc_invites": {
                    name: {"per_second": 1000, "burst_count": 1000}
                    for name in ("per_room", "per_user", "per_issuer")
                },
                "rc_joins": {
                    name: {"per_second": 1000, "burst_count": 1000} for name in ("local", "remote")
                },
            }
        )
    )


def _populate(server: Server, roster: Path) -> None:
    d = server.deployment
    sferumctl("roster", "import", str(d.dir), str(roster))
    # A's tests sign in as its first teacher only; every other account of A would only add
    # joins, each through A's event persister.
    people = [server.teacher()] if server.tag == ON_WORKERS else list(server.roles)
    server.accounts = d.issue(*people)
    if server.tag == "c":
        return  # C's people only need accounts: spare the CPU its rooms would take
    # The first provisioning (through A's event persister) takes minutes on a loaded machine.
    report = d.reconcile(timeout=600)
    assert report["failures"] == 0, (server.name, report, d.log_tail())


def _bring_up(server: Server, ca: Path, roster: Path) -> None:
    """Each server on its own thread: the one-process servers get their people and rooms while
    the workers of A are still starting."""
    _init(server, ca)
    server.deployment.start()
    _populate(server, roster)


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresCluster
) -> Iterator[dict[str, Server]]:
    base = tmp_path_factory.mktemp("federation")
    ca, certs = write_certificates(base / "tls", list(HOSTS.values()))
    taken: dict[str, set[int]] = {host: set() for host in HOSTS.values()}
    federation_ports = {tag: free_port_on(host, taken[host]) for tag, host in HOSTS.items()}
    names = {tag: f"{HOSTS[tag]}:{federation_ports[tag]}" for tag in HOSTS}
    made: dict[str, Server] = {}
    for n, (tag, host) in enumerate(HOSTS.items()):
        cert, key = certs[host]
        database, workers = "sqlite", ()
        if tag == ON_WORKERS:
            database = postgres.create_database(f"hs_federation_{tag}")
            first = free_port_on(host, taken[host], count=internal_ports(1))
            workers = ("--workers", "1", "--internal-port", str(first))
        deployment = Deployment(
            base / tag,
            names[tag],
            database,
            extra_init=(
                "--bind", host,
                "--federation-port", str(federation_ports[tag]),
                "--tls-cert", str(cert),
                "--tls-key", str(key),
                "--federate-with", *(names[p] for p in PARTNERS[tag]),
                *workers,
            ),
        )  # fmt: skip
        # The harness picks a client port on 127.0.0.1; this server listens on its own address.
        deployment.port = free_port_on(host, taken[host])
        deployment.base_url = f"http://{host}:{deployment.port}"
        # Metrics stay on 127.0.0.1 (--metrics-bind), where A's ports are taken already.
        deployment.metrics_port = free_port_on("127.0.0.1", taken["127.0.0.1"])
        roles = write_roster(base / f"roster-{tag}", tag, phone_block=100 + n)
        made[tag] = Server(tag, host, federation_ports[tag], deployment, roles, ca)
    everyone = list(made.values())
    try:
        _parallel(lambda s: _bring_up(s, ca, base / f"roster-{s.tag}"), everyone)
        yield made
    finally:
        _parallel(lambda s: s.deployment.stop(), everyone)


# -- helpers ------------------------------------------------------------------------------------


def q(room: str) -> str:
    return urllib.parse.quote(room)


async def invite(user: User, room_id: str, invitee: str) -> Reply:
    return await user.call("POST", f"/rooms/{q(room_id)}/invite", {"user_id": invitee})


async def pending_invites(user: User) -> set[str]:
    reply = await user.call("GET", "/sync?timeout=0")
    assert reply.status == 200, reply
    return set(reply.body.get("rooms", {}).get("invite", {}))


async def wait_for_invite(user: User, room_id: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if room_id in await pending_invites(user):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{user.user_id} saw no invite to {room_id} within {timeout}s")


async def members(user: User, room_id: str) -> dict[str, str]:
    """user ID -> membership, from the room's current state as `user`'s server sees it."""
    reply = await user.call("GET", f"/rooms/{q(room_id)}/members")
    assert reply.status == 200, reply
    return {e["state_key"]: e["content"]["membership"] for e in reply.body["chunk"]}


def refused(reply: Reply, *reasons: str) -> bool:
    """A 403 M_FORBIDDEN carrying one of our reasons."""
    return (
        reply.status == 403
        and reply.body.get("errcode") == "M_FORBIDDEN"
        and reply.reason in reasons
    )


def _federation_get(origin: Server, destination: Server, path: str) -> tuple[int, dict[str, Any]]:
    """A GET over federation signed with `origin`'s real signing key, to `destination`."""
    key_file = origin.deployment.dir / f"{origin.name}.signing.key"
    key = signedjson.key.read_signing_keys(key_file.read_text().splitlines())[0]
    request = {
        "method": "GET",
        "uri": path,
        "origin": origin.name,
        "destination": destination.name,
    }
    signed = signedjson.sign.sign_json(request, origin.name, key)
    key_id, sig = next(iter(signed["signatures"][origin.name].items()))
    auth = (
        f'X-Matrix origin="{origin.name}",destination="{destination.name}",'
        f'key="{key_id}",sig="{sig}"'
    )
    status, body = _federation_port_get(destination, path, {"Authorization": auth})
    return status, json.loads(body or b"{}")


def _federation_port_get(
    destination: Server, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """A GET to `destination`'s federation port, its certificate checked against the test CA."""
    context = ssl.create_default_context(cafile=str(destination.ca))
    request = urllib.request.Request(f"https://{destination.name}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# -- 1. the staff room crosses to a partner school ----------------------------------------------


async def test_partner_teacher_joins_staff_room_and_both_talk(servers: dict[str, Server]) -> None:
    a, b = servers["a"], servers["b"]
    host = await b.login(b.teacher())
    guest = await a.login(a.teacher())
    staff_b = await host.resolve(b.alias("staff", b.org))

    invited = await invite(host, staff_b, a.user_id(a.teacher()))
    assert invited.status == 200, (invited, b.deployment.log_tail())
    await wait_for_invite(guest, staff_b)
    joined = await guest.call("POST", f"/join/{q(staff_b)}", {})
    assert joined.status == 200, (joined, a.deployment.log_tail())
    assert staff_b in await guest.joined_rooms()
    assert a.user_id(a.teacher()) in await host.members(staff_b)

    host_nio = await nio_client(
        b.deployment.base_url, b.user_id(b.teacher()), b.accounts[b.teacher()]["password"]
    )
    guest_nio = await nio_client(
        a.deployment.base_url, a.user_id(a.teacher()), a.accounts[a.teacher()]["password"]
    )
    try:
        sent = await host.send_text(staff_b, "Коллеги из школы A, добро пожаловать")
        assert sent.status == 200, sent
        await wait_for_text(guest_nio, staff_b, "добро пожаловать")
        sent = await guest.send_text(staff_b, "Спасибо, рады знакомству")
        assert sent.status == 200, sent
        await wait_for_text(host_nio, staff_b, "рады знакомству")
    finally:
        await host_nio.close()
        await guest_nio.close()

    # A runs as workers: B's invite and B's transaction came in to A's federation reader (nginx
    # terminates TLS on A's federation port), A's transaction to B left from its federation
    # sender, and A's main process did neither.
    assert a.tag == ON_WORKERS
    from_b = rf"\{{{re.escape(b.name)}\}} Processed request: .*"
    await a.log_line("federation-reader", from_b + '"PUT /_matrix/federation/v2/invite/')
    await a.log_line("federation-reader", from_b + '"PUT /_matrix/federation/v1/send/')
    await a.log_line("federation-sender", rf"TX \[{re.escape(b.name)}\] \{{\S+\}} got 200")
    main_log = a.deployment.synapse_log()
    assert '"PUT /_matrix/federation/' not in main_log and "TX [" not in main_log


async def test_teacher_group_with_a_partner_teacher_stays_adults_only(
    servers: dict[str, Server],
) -> None:
    a, b = servers["a"], servers["b"]
    host = await b.login(b.teacher())
    guest = await a.login(a.teacher())
    created = await host.create_room(name="Методобъединение", invite=[a.user_id(a.teacher())])
    assert created.status == 200, (created, b.deployment.log_tail())
    room_id = created.body["room_id"]
    await wait_for_invite(guest, room_id)
    joined = await guest.call("POST", f"/join/{q(room_id)}", {})
    assert joined.status == 200, joined
    # our pupils never enter a room that other servers' users are in
    pupil = await invite(host, room_id, b.user_id(b.pupil()))
    assert refused(pupil, "ru.sferum.room_shared_with_partners"), pupil
    # a colleague from our own school may
    colleague = await invite(host, room_id, b.user_id(b.teacher(2)))
    assert colleague.status == 200, colleague


async def test_reconcile_keeps_the_partner_in_the_staff_room(servers: dict[str, Server]) -> None:
    a, b = servers["a"], servers["b"]
    host = await b.login(b.teacher())
    staff_b = await host.resolve(b.alias("staff", b.org))
    partner = a.user_id(a.teacher())
    if (await members(host, staff_b)).get(partner) != "join":
        assert (await invite(host, staff_b, partner)).status == 200
        guest = await a.login(a.teacher())
        await wait_for_invite(guest, staff_b)
        assert (await guest.call("POST", f"/join/{q(staff_b)}", {})).status == 200
    report = b.deployment.reconcile()
    assert report["failures"] == 0, report
    assert (await members(host, staff_b)).get(partner) == "join", report


# -- 2. an unlisted server gets nowhere, in either direction ------------------------------------


async def test_unlisted_server_is_refused_both_ways(servers: dict[str, Server]) -> None:
    a, b, c = servers["a"], servers["b"], servers["c"]
    b_teacher = await b.login(b.teacher())
    c_teacher = await c.login(c.teacher())
    a_teacher = await a.login(a.teacher())
    staff_b = await b_teacher.resolve(b.alias("staff", b.org))
    staff_a = await a_teacher.resolve(a.alias("staff", a.org))
    outsider = c.user_id(c.teacher())

    # B's teacher may not bring C's teacher into B's staff room
    invited = await invite(b_teacher, staff_b, outsider)
    assert refused(invited, "ru.sferum.server_not_listed"), invited
    # nor A's teacher into A's
    invited = await invite(a_teacher, staff_a, outsider)
    assert refused(invited, "ru.sferum.server_not_listed"), invited
    # nor into a group of their own made for C
    group = await a_teacher.create_room(name="С чужой школой", invite=[outsider])
    assert refused(group, "ru.sferum.server_not_listed"), group

    # C's teacher cannot reach B's staff room, by its alias or its ID (C's own whitelist stops
    # the request: "Failed to fetch alias", "Failed to make_join via any server")
    by_alias = await c_teacher.call("POST", f"/join/{q(b.alias('staff', b.org))}", {})
    assert by_alias.status >= 400, by_alias
    by_id = await c_teacher.call("POST", f"/join/{q(staff_b)}?server_name={q(b.name)}", {})
    assert by_id.status >= 400, by_id
    assert not await pending_invites(c_teacher)
    assert staff_b not in await c_teacher.joined_rooms()
    for room_id, user in ((staff_b, b_teacher), (staff_a, a_teacher)):
        assert outsider not in await members(user, room_id), room_id

    # and B itself turns C away, even for a request C signed properly; A is answered
    alias = urllib.parse.quote(b.alias("staff", b.org))
    path = f"/_matrix/federation/v1/query/directory?room_alias={alias}"
    status, body = await asyncio.to_thread(_federation_get, c, b, path)
    assert status == 403 and body.get("errcode") == "M_FORBIDDEN", (status, body)
    assert "Federation denied" in body.get("error", ""), body
    status, body = await asyncio.to_thread(_federation_get, a, b, path)
    assert status == 200 and body.get("room_id") == staff_b, (status, body)


async def test_federation_port_serves_no_client_or_admin_api(servers: dict[str, Server]) -> None:
    """The port partner servers reach answers federation only, on one process (B) as on
    workers behind nginx (A): not the client API, nor Synapse's admin API."""
    for server in (servers["a"], servers["b"]):
        status, body = await asyncio.to_thread(
            _federation_port_get, server, "/_matrix/federation/v1/version"
        )
        assert status == 200 and "server" in json.loads(body), (server.name, status, body)
        for path in ("/_matrix/client/versions", "/_synapse/admin/v1/server_version"):
            status, body = await asyncio.to_thread(_federation_port_get, server, path)
            assert status == 404, (server.name, path, status, body)


# -- 3. partners reach teachers and staff only, in the staff room and teachers' groups ----------


async def test_remote_pupil_cannot_be_invited(servers: dict[str, Server]) -> None:
    a, b = servers["a"], servers["b"]
    teacher = await a.login(a.teacher())
    pupil_id = b.user_id(b.pupil())
    staff_a = await teacher.resolve(a.alias("staff", a.org))

    # into A's staff room: A lets its teacher try (it cannot know a remote user's role), and B
    # turns the invite of its pupil away; B's reason reaches A's client
    into_staff = await invite(teacher, staff_a, pupil_id)
    assert refused(into_staff, "ru.sferum.remote_not_allowed"), into_staff
    # into a direct chat
    dm = await teacher.create_room(is_direct=True, invite=[pupil_id])
    assert refused(dm, "ru.sferum.remote_not_allowed"), dm
    # into a group made for the pupil
    group = await teacher.create_room(name="Кружок для соседей", invite=[pupil_id])
    assert refused(group, "ru.sferum.remote_not_allowed"), group
    # into a group of A's own (which does not federate)
    own = await teacher.create_room(name="Свой кружок")
    assert own.status == 200, own
    later = await invite(teacher, own.body["room_id"], pupil_id)
    assert refused(later, "ru.sferum.room_not_federated"), later

    pupil = await b.login(b.pupil())
    assert not await pending_invites(pupil)
    assert pupil_id not in await members(teacher, staff_a)


async def test_partner_teacher_cannot_enter_class_chat(servers: dict[str, Server]) -> None:
    a, b = servers["a"], servers["b"]
    teacher = await b.login(b.teacher())
    class_chat = await teacher.resolve(b.alias("class", b.klass))
    invited = await invite(teacher, class_chat, a.user_id(a.teacher()))
    assert refused(invited, "ru.sferum.managed_membership"), invited
    assert a.user_id(a.teacher()) not in await members(teacher, class_chat)
    guest = await a.login(a.teacher())
    assert class_chat not in await pending_invites(guest)
    # nor join it by alias: the class chat does not federate (m.federate: false)
    joined = await guest.call("POST", f"/join/{q(b.alias('class', b.klass))}", {})
    assert joined.status == 403, joined
