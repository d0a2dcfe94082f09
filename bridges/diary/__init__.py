"""The diary bridge: mirrors an electronic diary's marks, homework and timetable into the
school's Matrix rooms, exactly once (docs/architecture.md)."""
