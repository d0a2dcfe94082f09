"""Reading OneRoster CSV exports: shared by the roster import and the diary bridge's CSV source."""
