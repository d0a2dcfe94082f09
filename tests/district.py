"""Writes a large, realistic OneRoster 1.1 bulk roster: a district of Russian schools.

Used to test the roster parser and merge (tests/unit/test_merge.py) and to measure them at city
scale (bench/roster.py, bench/policy.py; `python bench/district.py OUT` writes one). Rows are
written as they are made, family by family, so memory stays flat whatever the size. The same
seed gives the same files.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import attrs

SCHOOL_YEAR = 2025  # the calendar year in which the school year starts, in September
# The day the generated district is read on: birth dates and ages hold on it whatever the date.
DISTRICT_DAY = date(SCHOOL_YEAR + 1, 3, 2)
GRADES = range(1, 12)
LETTERS = {"А": "a", "Б": "b", "В": "v"}  # class letter -> its sourcedId spelling
TEACHERS_PER_SCHOOL = 60
STAFF_PER_SCHOOL = 5
DISTRICT_ID = "district-1"

HEADERS = {
    "orgs.csv": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
    "users.csv": "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,"
    "userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,"
    "grades,password",
    "classes.csv": "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,"
    "classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods",
    "enrollments.csv": "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,"
    "userSourcedId,role,primary,beginDate,endDate",
    "demographics.csv": "sourcedId,status,dateLastModified,birthDate,sex,"
    "americanIndianOrAlaskaNative,asian,blackOrAfricanAmerican,"
    "nativeHawaiianOrOtherPacificIslander,white,demographicRaceTwoOrMoreRaces,"
    "hispanicOrLatinoEthnicity,countryOfBirthCode,stateOfBirthAbbreviation,cityOfBirth,"
    "publicSchoolResidenceStatus",
}

# Male names with the patronymics they give: (name, son's patronymic, daughter's patronymic).
MALE_NAMES = (
    ("Александр", "Александрович", "Александровна"),
    ("Алексей", "Алексеевич", "Алексеевна"),
    ("Андрей", "Андреевич", "Андреевна"),
    ("Дмитрий", "Дмитриевич", "Дмитриевна"),
    ("Иван", "Иванович", "Ивановна"),
    ("Игорь", "Игоревич", "Игоревна"),
    ("Максим", "Максимович", "Максимовна"),
    ("Михаил", "Михайлович", "Михайловна"),
    ("Никита", "Никитич", "Никитична"),
    ("Павел", "Павлович", "Павловна"),
    ("Роман", "Романович", "Романовна"),
    ("Сергей", "Сергеевич", "Сергеевна"),
)
FEMALE_NAMES = (
    "Анна", "Алиса", "Варвара", "Виктория", "Дарья", "Екатерина", "Елена", "Ирина", "Мария",
    "Наталья", "Ольга", "Полина", "София", "Татьяна", "Юлия",
)  # fmt: skip
# Masculine surnames; the feminine form adds «а».
SURNAMES = (
    "Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов",
    "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров",
    "Павлов", "Козлов", "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин",
)  # fmt: skip


@attrs.frozen
class DistrictSize:
    """How many records of each sort were written."""

    orgs: int
    pupils: int
    guardians: int
    teachers: int
    staff: int
    classes: int
    enrollments: int

    @property
    def people(self) -> int:
        return self.pupils + self.guardians + self.teachers + self.staff


@attrs.define
class _Counter:
    pupils: int = 0
    guardians: int = 0
    teachers: int = 0
    staff: int = 0
    classes: int = 0
    enrollments: int = 0
    phones: int = 0

    def next_phone(self) -> str:
        """A distinct, valid Russian mobile number."""
        self.phones += 1
        return f"+7{9_000_000_000 + self.phones}"


class _Writer:
    """One csv writer per file; rows get bulk mode's empty status and dateLastModified, and
    empty fields up to the header's width."""

    def __init__(self, out: Path, stack: ExitStack):
        self._writers: dict[str, tuple[Any, int]] = {}
        for file, header in HEADERS.items():
            stream = stack.enter_context((out / file).open("w", newline="", encoding="utf-8"))
            writer = csv.writer(stream, lineterminator="\n")
            columns = header.split(",")
            writer.writerow(columns)
            self._writers[file] = writer, len(columns)

    def row(self, file: str, sourced_id: str, *values: str) -> None:
        writer, width = self._writers[file]
        writer.writerow((sourced_id, "", "", *values, *[""] * (width - 3 - len(values))))


def generate_district(
    out: Path, schools: int = 50, pupils_per_school: int = 1000, seed: int = 1
) -> DistrictSize:
    """Writes the roster into the folder `out` (created if needed) and says how big it is."""
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(out)
    rng = random.Random(seed)
    count = _Counter()
    with ExitStack() as stack:
        writer = _Writer(out, stack)
        writer.row("orgs.csv", DISTRICT_ID, "Управление образования г. Зеленограда", "district")
        for number in range(1, schools + 1):
            _write_school(writer, rng, count, number, pupils_per_school)
    return DistrictSize(
        orgs=1 + schools,
        pupils=count.pupils,
        guardians=count.guardians,
        teachers=count.teachers,
        staff=count.staff,
        classes=count.classes,
        enrollments=count.enrollments,
    )


def _write_manifest(out: Path) -> None:
    used = {file.removesuffix(".csv") for file in HEADERS}
    kinds = ("academicSessions", "categories", "classes", "classResources", "courses",
             "courseResources", "demographics", "enrollments", "lineItems", "orgs", "resources",
             "results", "users")  # fmt: skip
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(("propertyName", "value"))
        writer.writerow(("manifest.version", "1.0"))
        writer.writerow(("oneroster.version", "1.1"))
        for kind in kinds:
            writer.writerow((f"file.{kind}", "bulk" if kind in used else "absent"))
        writer.writerow(("source.systemName", "bench/district.py"))


def _write_school(
    writer: _Writer, rng: random.Random, count: _Counter, number: int, pupils: int
) -> None:
    school = f"school-{number:03d}"
    writer.row("orgs.csv", school, f"Школа №{number}", "school", f"77-{number:04d}", DISTRICT_ID)
    classes = [
        (f"{school}-{grade}{spelling}", f"{grade}{letter}", grade)
        for grade in GRADES
        for letter, spelling in LETTERS.items()
    ]
    for class_id, title, grade in classes:
        writer.row(
            "classes.csv", class_id, title, f"{grade:02d}", "", title, "homeroom", "", school
        )
    count.classes += len(classes)

    for n in range(1, STAFF_PER_SCHOOL + 1):
        _write_adult(writer, count, f"{school}-s-{n}", "administrator", school, _adult_name(rng))
    count.staff += STAFF_PER_SCHOOL
    class_ids = [class_id for class_id, _, _ in classes]
    for n in range(1, TEACHERS_PER_SCHOOL + 1):
        teacher = f"{school}-t-{n:03d}"
        _write_adult(writer, count, teacher, "teacher", school, _adult_name(rng))
        own = class_ids[n - 1] if n <= len(class_ids) else None  # the first ones lead a class
        if own:
            _enroll(writer, count, own, school, teacher, "teacher", primary=True)
        others = [class_id for class_id in class_ids if class_id != own]
        for class_id in rng.sample(others, rng.choice((1, 2))):
            _enroll(writer, count, class_id, school, teacher, "teacher", primary=False)
    count.teachers += TEACHERS_PER_SCHOOL

    written = 0
    while written < pupils:
        children = min(rng.choices((1, 2, 3), weights=(88, 10, 2))[0], pupils - written)
        _write_family(writer, rng, count, school, classes, children)
        written += children


def _write_family(
    writer: _Writer,
    rng: random.Random,
    count: _Counter,
    school: str,
    classes: list[tuple[str, str, int]],
    children: int,
) -> None:
    """A family: one or two parents and their children, linked both ways by agentSourcedIds."""
    surname = rng.choice(SURNAMES)
    father, son_patronymic, daughter_patronymic = rng.choice(MALE_NAMES)
    child_ids = [f"{school}-p-{count.pupils + n:05d}" for n in range(1, children + 1)]
    count.pupils += children
    parents = rng.choices((("mother", "father"), ("mother",), ("father",)), (65, 25, 10))[0]
    parent_ids = [f"{school}-g-{count.guardians + n:05d}" for n in range(1, len(parents) + 1)]
    count.guardians += len(parents)

    for parent, parent_id in zip(parents, parent_ids, strict=True):
        if parent == "father":
            name = (father, rng.choice(MALE_NAMES)[1], surname)
        else:
            name = (rng.choice(FEMALE_NAMES), rng.choice(MALE_NAMES)[2], surname + "а")
        _write_adult(writer, count, parent_id, "parent", school, name, child_ids)

    for child_id in child_ids:
        class_id, _, grade = rng.choice(classes)
        if rng.random() < 0.5:
            given, middle, family, sex = rng.choice(MALE_NAMES)[0], son_patronymic, surname, "male"
        else:
            given, middle, family = rng.choice(FEMALE_NAMES), daughter_patronymic, surname + "а"
            sex = "female"
        agents = ",".join(parent_ids)
        row = ("true", school, "student", child_id, "", given, family, middle, "", "", "", "")
        writer.row("users.csv", child_id, *row, agents, f"{grade:02d}")
        writer.row("demographics.csv", child_id, _birth_date(rng, grade).isoformat(), sex)
        _enroll(writer, count, class_id, school, child_id, "student", primary=False)


def _write_adult(
    writer: _Writer,
    count: _Counter,
    sourced_id: str,
    role: str,
    school: str,
    name: tuple[str, str, str],
    agent_ids: Sequence[str] = (),
) -> None:
    given, middle, family = name
    row = ("true", school, role, sourced_id, "", given, family, middle, "", "", "")
    writer.row("users.csv", sourced_id, *row, count.next_phone(), ",".join(agent_ids))


def _adult_name(rng: random.Random) -> tuple[str, str, str]:
    """(given name, patronymic, surname) of a school adult: half women, half men."""
    surname = rng.choice(SURNAMES)
    if rng.random() < 0.5:
        return rng.choice(FEMALE_NAMES), rng.choice(MALE_NAMES)[2], surname + "а"
    return rng.choice(MALE_NAMES)[0], rng.choice(MALE_NAMES)[1], surname


def _enroll(
    writer: _Writer,
    count: _Counter,
    class_id: str,
    school: str,
    person_id: str,
    role: str,
    primary: bool,
) -> None:
    count.enrollments += 1
    row = (class_id, school, person_id, role, "true" if primary else "false")
    writer.row("enrollments.csv", f"e-{count.enrollments:06d}", *row)


def _birth_date(rng: random.Random, grade: int) -> date:
    """A birthday that puts the pupil in `grade`: first-graders turn 7 during their first year."""
    first = date(SCHOOL_YEAR - 6 - grade, 9, 1)
    return first + timedelta(days=rng.randrange(365))

