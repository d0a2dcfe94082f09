"""A real OpenID provider for SSO tests, on 127.0.0.1 at a free port, in a thread of the test.

Built on authlib's framework-agnostic `AuthorizationServer` (authorization code grant with the
OpenID Connect `OpenIDCode` extension and PKCE), with small adapters from the standard library's
HTTP server instead of Flask or Django. It serves discovery, the JWKS, /authorize, /token
(client_secret_basic or client_secret_post) and /userinfo, and signs ID tokens with RS256.

There is no login page: /authorize approves at once as `provider.user`, the claims the test
chose for whoever signs in next.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import attrs
from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    JsonPayload,
    JsonRequest,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey

from tests.integration.harness import free_port

CLIENT_ID = "synapse"
CLIENT_SECRET = "synapse-client-secret"


# -- models -----------------------------------------------------------------------------------


@attrs.frozen
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in {"openid", "profile", "phone"})

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Synapse's callback; the port is the test's.
        return redirect_uri.endswith("/_synapse/client/oidc/callback")

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in {"client_secret_basic", "client_secret_post"}

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@attrs.frozen
class AuthorizationCode(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: Mapping[str, Any]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


# -- requests from the standard library's HTTP server -----------------------------------------


class Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, values: Mapping[str, list[str]]):
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._values.items()}

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return defaultdict(list, {k: list(v) for k, v in self._values.items()})


@attrs.frozen
class HttpRequest:
    method: str
    url: str
    headers: Any  # http.client.HTTPMessage: case-insensitive
    args: dict[str, list[str]]
    form: dict[str, list[str]]


class Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, request: HttpRequest):
        super().__init__(request.method, request.url, headers=request.headers)
        self._request = request
        self.payload = Payload({**request.args, **request.form})

    @property
    def args(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._request.args.items()}

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._request.form.items()}


class FormJsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, request: HttpRequest):
        self._request = request

    @property
    def data(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._request.form.items()}


class JsonHttpRequest(JsonRequest):  # type: ignore[misc]
    def __init__(self, request: HttpRequest):
        super().__init__(request.method, request.url, request.headers)
        self.payload = FormJsonPayload(request)


Response = tuple[int, Any, list[tuple[str, str]]]


# -- the provider -----------------------------------------------------------------------------


class Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, provider: OpenIdProvider):
        super().__init__(scopes_supported=["openid", "profile", "phone"])
        self._provider = provider
        self.register_token_generator(
            "default", BearerTokenGenerator(lambda *a, **k: secrets.token_urlsafe(32))
        )

    def query_client(self, client_id: str) -> Client | None:
        return self._provider.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self._provider.access_tokens[token["access_token"]] = dict(request.user)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request if isinstance(request, OAuth2Request) else Request(request)

    def create_json_request(self, request: HttpRequest) -> JsonRequest:
        return JsonHttpRequest(request)

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        return status, body, list(headers)


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [
        "client_secret_basic",
        "client_secret_post",
    ]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        codes: dict[str, AuthorizationCode] = self.server._provider.codes
        codes[code] = AuthorizationCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri,
            scope=request.payload.scope,
            user=request.user,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            auth_time=int(time.time()),
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        found: AuthorizationCode | None = self.server._provider.codes.get(code)
        return found if found and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.server._provider.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Mapping[str, Any]:
        return authorization_code.user


class IdToken(OpenIDCode):  # type: ignore[misc]
    def __init__(self, provider: OpenIdProvider):
        super().__init__(require_nonce=True)
        self._provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return any(c.nonce == nonce for c in self._provider.codes.values())

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self._provider.key

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self._provider.issuer, "aud": [client.client_id]}

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": self._provider.key.kid or ""}

    def generate_user_info(self, user: Mapping[str, Any], scope: str) -> UserInfo:
        return UserInfo(user)


class OpenIdProvider:
    """Start with `start()`, point Synapse at `issuer`, set `user` before each sign-in."""

    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}/"
        self.key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"})
        self.key.ensure_kid()
        self.clients = {CLIENT_ID: Client(CLIENT_ID, CLIENT_SECRET)}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.user: dict[str, Any] = {}
        self.server = Server(self)
        self.server.register_grant(CodeGrant, [IdToken(self), CodeChallenge(required=False)])
        self._http = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)

    def metadata(self) -> dict[str, Any]:
        base = self.issuer.rstrip("/")
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "phone"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code"],
        }

    def route(self, request: HttpRequest) -> Response:
        path = urlsplit(request.url).path
        if path == "/.well-known/openid-configuration":
            return 200, self.metadata(), []
        if path == "/jwks":
            return 200, {"keys": [self.key.as_dict(private=False)]}, []
        if path == "/authorize":
            try:
                grant = self.server.get_consent_grant(request, end_user=dict(self.user))
            except OAuth2Error as e:
                return self.server.handle_error_response(Request(request), e)  # type: ignore[no-any-return]
            return self.server.create_authorization_response(  # type: ignore[no-any-return]
                request, grant_user=dict(self.user), grant=grant
            )
        if path == "/token" and request.method == "POST":
            return self.server.create_token_response(request)  # type: ignore[no-any-return]
        if path == "/userinfo":
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            user = self.access_tokens.get(token) if scheme.lower() == "bearer" else None
            if user is None:
                return 401, {"error": "invalid_token"}, [("WWW-Authenticate", "Bearer")]
            return 200, user, []
        return 404, {"error": "not_found"}, []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer({})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(parse_qs(self.rfile.read(length).decode()))

            def _answer(self, form: dict[str, list[str]]) -> None:
                url = f"http://127.0.0.1:{provider.port}{self.path}"
                args = parse_qs(urlsplit(url).query)
                request = HttpRequest(self.command, url, self.headers, args, form)
                status, body, headers = provider.route(request)
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                names = {name.lower() for name, _ in headers}
                for name, value in headers:
                    self.send_header(name, value)
                if "content-type" not in names:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # pytest shows failures; the provider's access log is noise

        return Handler
