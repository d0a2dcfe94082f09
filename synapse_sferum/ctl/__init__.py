"""`sferumctl`: sets up, checks, starts and feeds a synapse-sferum deployment folder."""
