"""Writes a large, realistic OneRoster 1.1 bulk roster: a district of Russian schools.

    python bench/district.py OUT [--schools 50] [--pupils 1000] [--seed 1]

The generator is the tests' (`tests/district.py`), so what is measured is what is tested.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.district import generate_district


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the CSV files into")
    parser.add_argument("--schools", type=int, default=50)
    parser.add_argument("--pupils", type=int, default=1000, help="pupils per school")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    size = generate_district(args.out, args.schools, args.pupils, args.seed)
    print(attrs.asdict(size) | {"people": size.people})


if __name__ == "__main__":
    main()
