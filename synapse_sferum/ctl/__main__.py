"""`python -m synapse_sferum.ctl`, for when the console script is not installed."""

from synapse_sferum.ctl.main import main

raise SystemExit(main())
