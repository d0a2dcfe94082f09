"""synapse-sferum: a closed school space on Synapse.

Load it in homeserver.yaml as `synapse_sferum.SferumModule`, and for SSO an OIDC provider's
`user_mapping_provider` as `synapse_sferum.SferumOidcMappingProvider`. The re-exports are lazy so
that the pure parts (model, rules, roster) can be imported without Synapse installed.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["SferumModule", "SferumOidcMappingProvider"]


def __getattr__(name: str) -> Any:
    if name == "SferumModule":
        from synapse_sferum.module import SferumModule

        return SferumModule
    if name == "SferumOidcMappingProvider":
        from synapse_sferum.sso import SferumOidcMappingProvider

        return SferumOidcMappingProvider
    raise AttributeError(name)
