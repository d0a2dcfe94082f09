"""Where Synapse asks the module to check phones: shared by the module and sferumctl's config.

Pure, so the CLI can import it without importing Synapse.
"""

import hashlib
import hmac

# Synapse delegates phone checks to the module's identity-API endpoints under this base. The
# base holds a secret derived from admin_api_secret, so only the homeserver (told the URL by its
# config) can ask for an SMS there; clients go through Synapse's rate-limited endpoints.
MSISDN_DELEGATE_PREFIX = "/_synapse/client/sferum/msisdn"


def msisdn_delegate_base(admin_api_secret: str) -> str:
    digest = hmac.new(admin_api_secret.encode(), b"msisdn-delegate", hashlib.sha256).hexdigest()
    return f"{MSISDN_DELEGATE_PREFIX}/{digest[:32]}"
