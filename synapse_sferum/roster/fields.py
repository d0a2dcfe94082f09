"""Reading one CSV row's values by column name, and turning the text into typed values.

A converter takes a non-empty, stripped value and raises `ValueError` with a message that
starts with the quoted value; `Cells.convert` prefixes the column name, giving messages like
`role 'pupil' is not one of administrator, aide, ...`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import TypeVar

import phonenumbers

from sferum_shared.model import Origin
from sferum_shared.roster.csvfiles import Row, Table
from sferum_shared.roster.problems import Problems

T = TypeVar("T")

PHONE_REGION = "RU"  # numbers written without a country code, such as 8 916 123-45-67
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RU_E164 = re.compile(r"\+7[0-9]{10}")


class Cells:
    """One data row, read by column name; a value that does not convert becomes a problem."""

    __slots__ = ("_problems", "_table", "_values", "line", "ok")

    def __init__(self, table: Table, row: Row, problems: Problems):
        self._table = table
        self._values = dict(zip(table.names, map(str.strip, row.fields), strict=True))
        self._problems = problems
        self.line = row.line
        self.ok = True  # False once any value of the row was reported

    @property
    def origin(self) -> Origin:
        return Origin(self._table.file, self.line)

    def column(self, name: str) -> int:
        """The 1-based column of `name`, or 0 if the file has no such column."""
        return self._table.columns.get(name, 0)

    def text(self, name: str) -> str:
        """The stripped value; empty if the column is empty or missing."""
        return self._values.get(name, "")

    def report(self, name: str, message: str) -> None:
        """Reports a problem in column `name` of this row and marks the row unusable."""
        self._problems.add(self._table.file, self.line, self.column(name), message)
        self.ok = False

    def require(self, names: Iterable[str]) -> bool:
        """Whether all `names` have values; reports each empty one."""
        empty = [name for name in names if not self.text(name)]
        for name in empty:
            self.report(name, f"{name} is empty; it is required")
        return not empty

    def convert(self, name: str, parse: Callable[[str], T], default: T) -> T:
        """`parse` of the value, or `default` if it is empty (or bad: the row is dropped then)."""
        value = self.text(name)
        if not value:
            return default
        try:
            return parse(value)
        except ValueError as err:
            self.report(name, f"{name} {err}")
            return default


def choice(choices: Mapping[str, T]) -> Callable[[str], T]:
    """A converter for an enumeration; case is ignored, as exports differ (`Scheduled`)."""
    by_folded = {name.casefold(): value for name, value in choices.items()}
    allowed = ", ".join(choices)

    def parse(value: str) -> T:
        try:
            return by_folded[value.casefold()]
        except KeyError:
            raise ValueError(f"{value!r} is not one of {allowed}") from None

    return parse


boolean = choice({"true": True, "false": False})


def iso_date(value: str) -> date:
    """A converter for YYYY-MM-DD dates that exist (OneRoster's date fields)."""
    if not _ISO_DATE.fullmatch(value):
        raise ValueError(f"{value!r} is not a date written as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a real date") from None


def birth_date(today: date) -> Callable[[str], date]:
    """A converter for YYYY-MM-DD dates that exist and are not after `today`."""

    def parse(value: str) -> date:
        day = iso_date(value)
        if day > today:
            raise ValueError(f"{value!r} is in the future (today is {today.isoformat()})")
        return day

    return parse


def phone(value: str) -> str:
    """The number in E.164 (`+79161234567`); without a country code it is taken as Russian."""
    if _RU_E164.fullmatch(value):
        # Most rosters write +7XXXXXXXXXX already; skipping the general parser for those saves
        # about 30 µs a number, which is seconds on a district's users.csv.
        number = phonenumbers.PhoneNumber(country_code=7, national_number=int(value[2:]))
    else:
        try:
            number = phonenumbers.parse(value, PHONE_REGION)
        except phonenumbers.NumberParseException:
            number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ValueError(f"{value!r} is not a valid phone number, such as +7 916 123-45-67")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def id_list(value: str) -> tuple[str, ...]:
    """The sourcedIds of a comma-separated list field, without blanks or repeats."""
    parts = (part.strip() for part in value.split(","))
    return tuple(dict.fromkeys(part for part in parts if part))
