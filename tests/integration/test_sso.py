"""Sign-in through an OpenID provider, as a browser does it (issue 3, point 4).

A real OpenID provider (tests/integration/oidc_provider.py) and a real Synapse configured with
its own `oidc_providers` and `synapse_sferum.SferumOidcMappingProvider`: discovery, JWKS, the
authorization code flow, Synapse's callback and `m.login.token`. A roster person gets (or gets
back) their own linked account; anyone else is refused on Synapse's error page with the reason,
and no account is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml

from tests.integration.clients import User
from tests.integration.conftest import make_deployment
from tests.integration.harness import (
    TOO_YOUNG,
    Deployment,
    roster_with_a_four_year_old,
    sferumctl,
)
from tests.integration.oidc_provider import CLIENT_ID, CLIENT_SECRET, OpenIdProvider

pytestmark = pytest.mark.integration

SERVER = "sso.test"
IDP = "diary"
CLIENT_REDIRECT = "http://localhost/done"


@pytest.fixture(scope="module")
def provider() -> Iterator[OpenIdProvider]:
    op = OpenIdProvider()
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="module")
def deployment(
    provider: OpenIdProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("sso")
    roster = roster_with_a_four_year_old(tmp / "roster")
    deployment = make_deployment(tmp, "sqlite", None, SERVER)
    deployment.init()
    (deployment.dir / "conf.d" / "60-oidc.yaml").write_text(yaml.safe_dump(oidc_config(provider)))
    deployment.start()
    try:
        sferumctl("roster", "import", str(deployment.dir), str(roster))
        yield deployment
    finally:
        deployment.stop()


def oidc_config(provider: OpenIdProvider) -> dict[str, Any]:
    return {
        "oidc_providers": [
            {
                "idp_id": IDP,
                "idp_name": "Электронный дневник",
                "issuer": provider.issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "scopes": ["openid", "profile"],
                # The test provider speaks plain HTTP, which discovery checks would refuse.
                "skip_verification": True,
                "allow_existing_users": True,
                "user_mapping_provider": {
                    "module": "synapse_sferum.SferumOidcMappingProvider",
                    "config": {"claim": "sub", "match": "person_id"},
                },
            }
        ],
        # Synapse's HTTP client refuses loopback addresses unless allowed.
        "ip_range_whitelist": ["127.0.0.1"],
        # The client's redirect without Synapse's "continue to your app?" page.
        "sso": {"client_whitelist": [CLIENT_REDIRECT]},
    }


async def sign_in(deployment: Deployment, provider: OpenIdProvider, **claims: Any) -> Any:
    """The whole browser flow as the person with these claims; a User, or Synapse's error page.

    Redirects are followed by hand, so that the one to the client (carrying the login token)
    is where the browser part ends.
    """
    provider.user = claims
    # Synapse's session cookies, kept by hand like a browser would (both servers are 127.0.0.1).
    cookies: SimpleCookie = SimpleCookie()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:
        url = (
            f"{deployment.base_url}/_matrix/client/v3/login/sso/redirect/oidc-{IDP}"
            f"?redirectUrl={CLIENT_REDIRECT}"
        )
        for _ in range(10):
            to_synapse = url.startswith(deployment.base_url)
            headers = {"Cookie": "; ".join(f"{k}={m.value}" for k, m in cookies.items())}
            async with browser.get(
                url, allow_redirects=False, headers=headers if to_synapse else {}
            ) as response:
                if to_synapse:
                    for header in response.headers.getall("Set-Cookie", []):
                        cookies.load(header)
                if response.status not in (301, 302, 303, 307):
                    return response.status, await response.text()
                url = response.headers["Location"]
            if url.startswith(CLIENT_REDIRECT):
                break
        else:
            raise AssertionError(f"too many redirects, last to {url}")
        token = parse_qs(urlsplit(url).query)["loginToken"][0]
        async with browser.post(
            f"{deployment.base_url}/_matrix/client/v3/login",
            json={"type": "m.login.token", "token": token},
        ) as response:
            body = await response.json()
            assert response.status == 200, body
            return User(deployment.base_url, body["user_id"], body["access_token"])


async def account_exists(deployment: Deployment, localpart: str) -> bool:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{deployment.base_url}/_matrix/client/v3/register/available",
            params={"username": localpart},
        ) as response,
    ):
        return response.status != 200


async def test_a_roster_person_gets_their_own_linked_account(
    deployment: Deployment, provider: OpenIdProvider
) -> None:
    user = await sign_in(deployment, provider, sub="g-novikov", name="Ivan N.")
    assert isinstance(user, User), deployment.log_tail()
    assert user.user_id == f"@novikov.ivan:{SERVER}"
    profile = await user.call("GET", f"/profile/{user.user_id}")
    assert profile.body["displayname"] == "Иван Александрович Новиков", profile
    # Linked: the platform puts the parent into the class's parents chat.
    deployment.reconcile()
    assert await user.resolve(f"#parents-5a:{SERVER}") in await user.joined_rooms()

    again = await sign_in(deployment, provider, sub="g-novikov")
    assert isinstance(again, User) and again.user_id == user.user_id


async def test_someone_with_an_account_signs_in_to_it(
    deployment: Deployment, provider: OpenIdProvider
) -> None:
    issued = deployment.issue("g-popova")["g-popova"]
    user = await sign_in(deployment, provider, sub="g-popova")
    assert isinstance(user, User), deployment.log_tail()
    assert user.user_id == issued["user_id"]


@pytest.mark.parametrize(
    ("sub", "localpart", "reason"),
    [
        ("nobody", "nobody", "ru.sferum.person_not_in_directory"),
        (TOO_YOUNG, "malysh.ivan", "ru.sferum.too_young"),
    ],
)
async def test_others_are_refused_with_the_reason_and_get_no_account(
    deployment: Deployment, provider: OpenIdProvider, sub: str, localpart: str, reason: str
) -> None:
    refused = await sign_in(deployment, provider, sub=sub)
    assert not isinstance(refused, User), refused
    status, page = refused
    assert status == 400 and reason in page, page
    assert "You cannot sign in here" in page
    assert not await account_exists(deployment, localpart)
