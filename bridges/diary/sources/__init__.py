"""Diary sources behind one small interface (`Source`)."""
