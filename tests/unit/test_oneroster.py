"""The OneRoster CSV parser: what it builds from good rosters, and where it points in bad ones."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from sferum_shared.model import (
    ClassType,
    Demographics,
    Enrollment,
    EnrollmentRole,
    ImportMode,
    KindChange,
    Org,
    Origin,
    Person,
    Role,
    RosterError,
    SchoolClass,
)
from synapse_sferum.roster.oneroster import parse_roster, parse_roster_zip

Files = dict[str, str | bytes]
TODAY = date(2026, 3, 2)  # the day the rosters are read on: birth dates after it are refused

ORGS = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId"
USERS_1_1 = (
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password"
)
USERS_1_2 = (
    "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,"
    "middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,"
    "userMasterIdentifier,resourceSourcedIds,preferredGivenName,preferredMiddleName,"
    "preferredFamilyName,primaryOrgSourcedId,pronouns,metadata.jp.kanaGivenName"
)
ROLES = (
    "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,"
    "orgSourcedId,userProfileSourcedId"
)
CLASSES = (
    "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,"
    "location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods"
)
ENROLLMENTS = (
    "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
    "primary,beginDate,endDate"
)
DEMOGRAPHICS = "sourcedId,status,dateLastModified,birthDate,sex"
MANIFEST = "propertyName,value"


def csv_file(header: str, *rows: str) -> str:
    return "\n".join((header, *rows)) + "\n"


def roster_1_1() -> Files:
    """A small, valid 1.1 bulk roster; line numbers below refer to it."""
    return {
        "orgs.csv": csv_file(
            ORGS,
            "district,,,Управление образования,district,,",
            "school,,,Школа №1,School,,district",
        ),
        "users.csv": csv_file(
            USERS_1_1,
            "t1,,,true,school,teacher,ivanova,,Марина,Иванова,Сергеевна,,"
            "ivanova@school.example,,8 (916) 123-45-67,,,",
            "s1,,,true,school,student,petrov,,Пётр,Петров,Иванович,,,,,g1,05,",
            "g1,,,false,school,parent,petrova,,Анна,Петрова,,,,+7 903 765-43-21,,s1,,",
        ),
        "classes.csv": csv_file(CLASSES, "5a,,,5А,05,,,Homeroom,,school,,,,"),
        "enrollments.csv": csv_file(
            ENROLLMENTS, "e1,,,5a,school,t1,teacher,true,,", "e2,,,5a,school,s1,student,,,"
        ),
        "demographics.csv": csv_file(DEMOGRAPHICS, "s1,,,2015-03-14,male"),
        "courses.csv": 'whatever,"is not read',
    }


def roster_1_2() -> Files:
    return {
        "manifest.csv": csv_file(MANIFEST, "oneroster.version,1.2", "file.users,bulk"),
        "orgs.csv": csv_file(ORGS, "school,,,Школа №1,school,,"),
        "users.csv": csv_file(
            USERS_1_2,
            "t1,,,true,ivanova,,Марина,Иванова,Сергеевна,,,,+79161234567,s1,,,,,,,,,,マリナ",
            "s1,,,true,petrov,,Пётр,Петров,Маринович,,,,,t1,,,,,,,,,,",
        ),
        "roles.csv": csv_file(
            ROLES,
            "r1,,,t1,primary,teacher,,,school,",
            "r2,,,t1,secondary,guardian,,,school,",
            "r3,,,s1,primary,student,,,school,",
        ),
    }


def write_folder(folder: Path, files: Files) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


def zip_of(files: Files, folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(folder + name, content)
    return buffer.getvalue()


def problems_of(parse: Callable[[], object]) -> list[str]:
    with pytest.raises(RosterError) as err:
        parse()
    return [str(problem) for problem in err.value.problems]


def test_parses_a_1_1_folder(tmp_path: Path) -> None:
    change = parse_roster(write_folder(tmp_path / "roster", roster_1_1()), TODAY)

    assert all(change.kind(kind).mode is ImportMode.BULK for kind in ("orgs", "people"))
    assert change.orgs.upserts == {
        "district": Org("district", "Управление образования", "district"),
        "school": Org("school", "Школа №1", "school", parent_id="district"),
    }
    assert change.people.upserts["t1"] == Person(
        sourced_id="t1",
        given_name="Марина",
        family_name="Иванова",
        middle_name="Сергеевна",
        roles=frozenset({Role.TEACHER}),
        org_ids=("school",),
        username="ivanova",
        phone="+79161234567",
        email="ivanova@school.example",
    )
    guardian = change.people.upserts["g1"]
    assert isinstance(guardian, Person)
    assert (guardian.roles, guardian.phone, guardian.enabled, guardian.agent_ids) == (
        frozenset({Role.GUARDIAN}),
        "+79037654321",  # from the sms column, as phone is empty
        False,
        ("s1",),
    )
    assert guardian.origin == Origin("users.csv", 4)
    assert change.classes.upserts == {"5a": SchoolClass("5a", "5А", "school", ClassType.HOMEROOM)}
    assert change.enrollments.upserts == {
        "e1": Enrollment("e1", "5a", "t1", EnrollmentRole.TEACHER, primary=True),
        "e2": Enrollment("e2", "5a", "s1", EnrollmentRole.STUDENT),
    }
    assert change.demographics.upserts == {"s1": Demographics("s1", date(2015, 3, 14))}
    assert change.enrollments.file == "enrollments.csv"
    assert change.enrollments.columns["endDate"] == 10
    assert change.enrollments.columns["userSourcedId"] == 6


def test_reads_an_enrollments_end_date_past_or_future(tmp_path: Path) -> None:
    files = roster_1_1()
    edit("enrollments.csv", "teacher,true,,", "teacher,true,2025-09-01,2027-06-01")(files)
    edit("enrollments.csv", "student,,,", "student,,,2026-03-01")(files)
    change = parse_roster(write_folder(tmp_path / "roster", files), TODAY)
    upserts = change.enrollments.upserts.items()
    ends = {k: e.end_date for k, e in upserts if isinstance(e, Enrollment)}
    assert ends == {"e1": date(2027, 6, 1), "e2": date(2026, 3, 1)}


def test_parses_a_1_2_folder_with_roles(tmp_path: Path) -> None:
    change = parse_roster(write_folder(tmp_path, roster_1_2()), TODAY)

    teacher = change.people.upserts["t1"]
    assert isinstance(teacher, Person)
    assert teacher.roles == frozenset({Role.TEACHER, Role.GUARDIAN})
    assert teacher.org_ids == ("school",)
    assert change.people.upserts["s1"] == Person(
        "s1",
        "Пётр",
        "Петров",
        frozenset({Role.STUDENT}),
        ("school",),
        middle_name="Маринович",
        username="petrov",
        agent_ids=("t1",),
    )
    assert change.classes.mode is ImportMode.ABSENT


def test_a_roles_file_means_1_2_without_a_manifest(tmp_path: Path) -> None:
    files = roster_1_2()
    del files["manifest.csv"]
    change = parse_roster(write_folder(tmp_path, files), TODAY)
    assert set(change.people.upserts) == {"t1", "s1"}


@pytest.mark.parametrize(
    "folder", ["", "OneRoster-2025-09-01/"], ids=["at the root", "in one folder"]
)
def test_parses_a_zip_as_the_same_folder(tmp_path: Path, folder: str) -> None:
    files = roster_1_1()
    data = zip_of(files | {"__MACOSX/._users.csv": b"\x00\x05\x16\x07"}, folder)  # macOS litter

    from_folder = parse_roster(write_folder(tmp_path / "roster", files), TODAY)
    assert parse_roster_zip(data, TODAY) == from_folder
    (tmp_path / "roster.zip").write_bytes(data)
    assert parse_roster(tmp_path / "roster.zip", TODAY) == from_folder


def test_a_delta_upserts_and_deletes_what_the_manifest_names(tmp_path: Path) -> None:
    files = roster_1_1() | {
        "manifest.csv": csv_file(
            MANIFEST,
            "manifest.version,1.0",
            "oneroster.version,1.1",
            "file.users,delta",
            "file.enrollments,delta",
            "file.orgs,absent",
            "file.classes,absent",
            "file.demographics,absent",
        ),
        "users.csv": csv_file(
            USERS_1_1,
            "s1,active,2025-09-01T08:00:00Z,true,school,student,petrov,,Пётр,Петров,,,,,,,,",
            "s2,tobedeleted,2025-09-01T08:00:00Z,,,,,,,,,,,,,,,",
        ),
        "enrollments.csv": csv_file(ENROLLMENTS, "e2,TOBEDELETED,2025-09-01,,,,,,,"),
    }
    change = parse_roster(write_folder(tmp_path, files), TODAY)

    assert change.people.mode is ImportMode.DELTA
    assert set(change.people.upserts) == {"s1"}
    assert change.people.deletions == frozenset({"s2"})
    assert change.people.deletion_lines == {"s2": 3}
    assert change.enrollments == KindChange(
        ImportMode.DELTA,
        deletions=frozenset({"e2"}),
        file="enrollments.csv",
        columns={name: n for n, name in enumerate(ENROLLMENTS.split(","), 1)},
        deletion_lines={"e2": 2},
    )
    assert change.orgs == KindChange(ImportMode.ABSENT, file="orgs.csv")  # there, but ignored


def edit(file: str, old: str, new: str) -> Callable[[Files], None]:
    def change(files: Files) -> None:
        text = files[file]
        assert isinstance(text, str) and old in text
        files[file] = text.replace(old, new, 1)

    return change


def add(file: str, content: str) -> Callable[[Files], None]:
    def change(files: Files) -> None:
        files[file] = content

    return change


def together(*changes: Callable[[Files], None]) -> Callable[[Files], None]:
    def change(files: Files) -> None:
        for each in changes:
            each(files)

    return change


def encode(file: str, encoding: str) -> Callable[[Files], None]:
    def change(files: Files) -> None:
        text = files[file]
        assert isinstance(text, str)
        files[file] = text.encode(encoding)

    return change


ROLES_1_1 = "administrator, aide, guardian, parent, proctor, relative, student, teacher"
ROLES_1_2 = (
    "aide, counselor, districtAdministrator, guardian, parent, principal, proctor, relative, "
    "siteAdministrator, student, systemAdministrator, teacher"
)


@pytest.mark.parametrize(
    ("change", "problems"),
    [
        pytest.param(
            edit("users.csv", ",familyName,", ",lastName,"),
            ["users.csv:1:0: has no column 'familyName', which is required"],
            id="missing required column",
        ),
        pytest.param(
            edit("classes.csv", ",classType,", ",classtype,"),
            [
                "classes.csv:1:0: has no column 'classType', which is required "
                "(there is 'classtype'; names are case-sensitive)"
            ],
            id="column in the wrong case",
        ),
        pytest.param(
            edit("orgs.csv", ",type,identifier,", ",type,type,"),
            ["orgs.csv:1:6: column 'type' is already column 5"],
            id="repeated column",
        ),
        pytest.param(
            edit("users.csv", ",teacher,", ",pupil,"),
            [f"users.csv:2:6: role 'pupil' is not one of {ROLES_1_1}"],
            id="bad user role",
        ),
        pytest.param(
            edit("classes.csv", ",Homeroom,", ",lecture,"),
            ["classes.csv:2:8: classType 'lecture' is not one of homeroom, scheduled"],
            id="bad class type",
        ),
        pytest.param(
            edit("orgs.csv", ",School,", ",campus,"),
            [
                "orgs.csv:3:5: type 'campus' is not one of department, district, local, "
                "national, school, state"
            ],
            id="bad org type",
        ),
        pytest.param(
            edit("enrollments.csv", "t1,teacher", "t1,proctor"),
            ["enrollments.csv:2:7: role 'proctor' is not one of student, teacher"],
            id="bad enrollment role",
        ),
        pytest.param(
            edit("users.csv", "g1,,,false,", "g1,,,no,"),
            ["users.csv:4:4: enabledUser 'no' is not one of true, false"],
            id="bad boolean",
        ),
        pytest.param(
            edit("users.csv", "8 (916) 123-45-67", "8 (916) 123-45"),
            [
                "users.csv:2:15: phone '8 (916) 123-45' is not a valid phone number, "
                "such as +7 916 123-45-67"
            ],
            id="bad phone",
        ),
        pytest.param(
            edit("demographics.csv", "2015-03-14", "2015-02-30"),
            ["demographics.csv:2:4: birthDate '2015-02-30' is not a real date"],
            id="impossible date",
        ),
        pytest.param(
            edit("demographics.csv", "2015-03-14", "14.03.2015"),
            ["demographics.csv:2:4: birthDate '14.03.2015' is not a date written as YYYY-MM-DD"],
            id="date in another format",
        ),
        pytest.param(
            edit("demographics.csv", "2015-03-14", "2026-03-03"),
            [
                "demographics.csv:2:4: birthDate '2026-03-03' is in the future "
                "(today is 2026-03-02)"
            ],
            id="date in the future",
        ),
        pytest.param(
            edit("users.csv", "g1,,,false,", "s1,,,false,"),
            ["users.csv:4:1: sourcedId 's1' is already used on line 3"],
            id="duplicate id",
        ),
        pytest.param(
            edit("users.csv", ",Пётр,", ",,"),
            ["users.csv:3:9: givenName is empty; it is required"],
            id="empty required value",
        ),
        pytest.param(
            edit("classes.csv", "5a,,,5А,05,,,", "5a,5А,05,,,"),
            ["classes.csv:2:0: has 12 fields but the header has 14"],
            id="too few fields",
        ),
        pytest.param(
            edit(
                "enrollments.csv",
                "e1,,,5a,school,t1,teacher,true,,",
                "e1,,,5a,school,t1,teacher,true,,,",
            ),
            ["enrollments.csv:2:0: has 11 fields but the header has 10"],
            id="too many fields",
        ),
        pytest.param(
            edit("users.csv", ",Марина,", ',"Марина,'),
            ["users.csv:2:0: a quoted field that starts here is never closed"],
            id="unterminated quote",
        ),
        pytest.param(
            encode("users.csv", "cp1251"),
            [
                "users.csv:2:35: is not UTF-8 (byte 0xcc); "
                "save it as UTF-8, e.g. «CSV UTF-8» in Excel"
            ],
            id="not UTF-8",
        ),
        pytest.param(
            edit("enrollments.csv", "e2,,,", "e2,tobedeleted,,"),
            [
                "enrollments.csv:3:2: status 'tobedeleted' is not allowed in a bulk file; "
                "leave it empty (a bulk file deletes whatever it leaves out)"
            ],
            id="deletion in a bulk file",
        ),
        pytest.param(
            add("classes.csv", ""),
            ["classes.csv:1:0: is empty; it needs a header row"],
            id="empty file",
        ),
        pytest.param(
            add(
                "manifest.csv",
                csv_file(
                    MANIFEST, "oneroster.version,1.0", "file.roles,bulk", "file.users,partial"
                ),
            ),
            [
                "manifest.csv:2:2: oneroster.version '1.0' is not one of 1.1, 1.2",
                "manifest.csv:3:2: file.roles is bulk but roles.csv is missing",
                "manifest.csv:4:2: file.users 'partial' is not one of bulk, delta, absent",
            ],
            id="bad manifest",
        ),
        pytest.param(
            together(
                add("manifest.csv", csv_file(MANIFEST, "file.orgs,delta")),
                add("orgs.csv", csv_file("sourcedId,name,type", "school,Школа №1,school")),
            ),
            ["orgs.csv:1:0: has no column 'status', which is required"],
            id="delta without status",
        ),
        pytest.param(
            together(
                add("manifest.csv", csv_file(MANIFEST, "file.enrollments,delta")),
                edit("enrollments.csv", "e2,,,", "e2,inactive,,"),
            ),
            [
                "enrollments.csv:2:2: status '' is not one of active, tobedeleted",
                "enrollments.csv:3:2: status 'inactive' is not one of active, tobedeleted",
            ],
            id="bad delta status",
        ),
        pytest.param(
            edit("enrollments.csv", "student,,,", "student,,,2027-06-31"),
            ["enrollments.csv:3:10: endDate '2027-06-31' is not a real date"],
            id="endDate that does not exist",
        ),
        pytest.param(
            edit("enrollments.csv", "student,,,", "student,,,31.05.2027"),
            ["enrollments.csv:3:10: endDate '31.05.2027' is not a date written as YYYY-MM-DD"],
            id="endDate not in ISO form",
        ),
        pytest.param(
            together(
                edit("users.csv", ",teacher,", ",pupil,"),
                edit("users.csv", ",Пётр,", ",,"),
                edit("demographics.csv", "2015-03-14", "2015-02-30"),
            ),
            [
                "demographics.csv:2:4: birthDate '2015-02-30' is not a real date",
                f"users.csv:2:6: role 'pupil' is not one of {ROLES_1_1}",
                "users.csv:3:9: givenName is empty; it is required",
            ],
            id="all problems at once",
        ),
    ],
)
def test_reports_each_problem_at_its_place(
    tmp_path: Path, change: Callable[[Files], None], problems: list[str]
) -> None:
    files = roster_1_1()
    change(files)
    folder = write_folder(tmp_path / "roster", files)
    assert problems_of(lambda: parse_roster(folder, TODAY)) == problems


@pytest.mark.parametrize(
    ("change", "problems"),
    [
        pytest.param(
            edit("roles.csv", ",guardian,", ",pupil,"),
            [f"roles.csv:3:6: role 'pupil' is not one of {ROLES_1_2}"],
            id="bad role",
        ),
        pytest.param(
            edit("roles.csv", "r3,,,s1,", "r3,,,s9,"),
            [
                "roles.csv:4:4: userSourcedId 's9' has no active row in users.csv; "
                "a 1.2 roster sends a user's roles together with the user",
                "users.csv:3:0: user 's1' has no role in roles.csv",
            ],
            id="role of an unknown user",
        ),
    ],
)
def test_reports_1_2_role_problems(
    tmp_path: Path, change: Callable[[Files], None], problems: list[str]
) -> None:
    files = roster_1_2()
    change(files)
    folder = write_folder(tmp_path, files)
    assert problems_of(lambda: parse_roster(folder, TODAY)) == problems


EXPECTED = (
    "manifest.csv, orgs.csv, users.csv, roles.csv, demographics.csv, classes.csv, enrollments.csv"
)


@pytest.mark.parametrize(
    ("data", "problems"),
    [
        pytest.param(
            zip_of({}),
            [f"roster.zip:0:0: holds no roster file; expected some of {EXPECTED}"],
            id="empty zip",
        ),
        pytest.param(
            zip_of({"courses.csv": "sourcedId\n", "readme.txt": "hi"}),
            [f"roster.zip:0:0: holds no roster file; expected some of {EXPECTED}"],
            id="no roster file",
        ),
        pytest.param(
            b"PK\x03\x04 not really a zip",
            ["roster.zip:0:0: is not a readable zip file (File is not a zip file)"],
            id="corrupt zip",
        ),
        pytest.param(
            zip_of({"2024/users.csv": "", "2025/users.csv": ""}),
            [
                "roster.zip:0:0: has roster files in several folders (2024, 2025); "
                "put them at the top level"
            ],
            id="several folders",
        ),
    ],
)
def test_reports_a_zip_that_holds_no_roster(data: bytes, problems: list[str]) -> None:
    assert problems_of(lambda: parse_roster_zip(data, TODAY)) == problems


def test_reports_a_folder_that_holds_no_roster(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "export", {"notes.txt": "nothing here"})
    assert problems_of(lambda: parse_roster(folder, TODAY)) == [
        f"export:0:0: holds no roster file; expected some of {EXPECTED}"
    ]


def test_stops_listing_problems_of_a_file_after_a_hundred(tmp_path: Path) -> None:
    rows = [f"x{n},,,Школа,campus,," for n in range(150)]
    folder = write_folder(tmp_path, {"orgs.csv": csv_file(ORGS, *rows)})
    problems = problems_of(lambda: parse_roster(folder, TODAY))
    assert len(problems) == 101
    assert problems[0] == "orgs.csv:0:0: more than 100 problems; the rest are not listed"


def test_accepts_a_byte_order_mark_and_crlf_line_ends(tmp_path: Path) -> None:
    text = "\ufeff" + csv_file(ORGS, "school,,,Школа №1,school,,").replace("\n", "\r\n")
    change = parse_roster(write_folder(tmp_path, {"orgs.csv": text}), TODAY)
    assert change.orgs.upserts == {"school": Org("school", "Школа №1", "school")}
