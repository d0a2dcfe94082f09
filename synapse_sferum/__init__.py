"""synapse-sferum: a closed school space on Synapse.

Load it in homeserver.yaml as `synapse_sferum.SferumModule`. The re-export is lazy so that the
pure parts (model, rules, roster) can be imported without Synapse installed.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["SferumModule"]


def __getattr__(name: str) -> Any:
    if name == "SferumModule":
        from synapse_sferum.module import SferumModule

        return SferumModule
    raise AttributeError(name)
