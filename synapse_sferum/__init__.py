"""synapse-sferum: a closed school space on Synapse."""

__version__ = "0.1.0"
