"""Tests of the fake Outreach server, driven over real HTTP with httpx."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

try:
    from tests.fake_outreach import FakeOutreach
except ImportError:  # tests/ itself on sys.path (pytest rootdir-less import)
    from fake_outreach import FakeOutreach  # type: ignore[no-redef,import-not-found]

# 2016-12-31T23:00:00Z: the hourly window resets at 2017-01-01T00:00:00Z.
START = 1_483_225_200.0
JSON_API = "application/vnd.api+json"
REDIRECT = "http://localhost:8765/callback"
INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": (
        "The provided authorization grant is invalid, expired, revoked, does not match "
        "the redirection URI used in the authorization request, or was issued to another "
        "client."
    ),
}


class FakeClock:
    """A settable clock for the fake's ``clock`` parameter."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def make_fake(clock: FakeClock) -> Iterator[Callable[..., FakeOutreach]]:
    """Start fakes with custom settings; all are stopped at teardown."""
    started: list[FakeOutreach] = []

    def make(**kwargs: Any) -> FakeOutreach:
        kwargs.setdefault("clock", clock)
        fake = FakeOutreach(**kwargs).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()
        assert fake.errors == []  # no bug inside the fake itself


@pytest.fixture
def fake(make_fake: Callable[..., FakeOutreach]) -> FakeOutreach:
    return make_fake()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=2, verify=False) as client:  # plain HTTP only
        yield client


def auth(fake: FakeOutreach) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.issue_tokens()['access_token']}"}


def patch(
    http: httpx.Client,
    fake: FakeOutreach,
    prospect_id: int | str,
    attributes: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> httpx.Response:
    if body is None:
        body = {"data": {"type": "prospect", "id": prospect_id, "attributes": attributes or {}}}
    hdrs = {"Content-Type": JSON_API, **auth(fake), **(headers or {})}
    content = body if isinstance(body, bytes) else httpx.Request("GET", "/", json=body).content
    return http.patch(f"{fake.url}/api/v2/prospects/{prospect_id}", headers=hdrs, content=content)


def token_request(http: httpx.Client, fake: FakeOutreach, **params: str) -> httpx.Response:
    form = {"client_id": "test-client", "client_secret": "test-secret", **params}
    return http.post(f"{fake.url}/oauth/token", data=form)


# -- OAuth -----------------------------------------------------------------------


def test_authorization_code_flow(fake: FakeOutreach, http: httpx.Client) -> None:
    fake.add_prospect(7, firstName="Ada")
    r = http.get(
        f"{fake.url}/oauth/authorize",
        params={
            "client_id": "test-client",
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "prospects.read prospects.write",
            "state": "xyz",
        },
    )
    assert r.status_code == 302
    location = urlsplit(r.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"]
    code = query["code"][0]

    r = token_request(http, fake, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert r.status_code == 200
    tokens = r.json()
    assert set(tokens) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "scope",
        "created_at",
    }
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 7200
    assert tokens["scope"] == "prospects.read prospects.write"
    assert tokens["created_at"] == int(START)
    assert r.headers["Cache-Control"] == "no-store"
    assert fake.token_mints == 1

    r = http.get(
        f"{fake.url}/api/v2/prospects/7",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert r.status_code == 200
    assert r.json()["data"]["attributes"] == {"firstName": "Ada"}

    # Codes are single-use.
    r = token_request(http, fake, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert (r.status_code, r.json()) == (400, INVALID_GRANT)
    assert fake.token_mints == 1


def test_token_endpoint_accepts_json_and_rejects_bad_client(
    fake: FakeOutreach, http: httpx.Client
) -> None:
    code = fake.authorize(redirect_uri=REDIRECT, state="s", scope="prospects.write")
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "test-client",
        "client_secret": "wrong",
        "redirect_uri": REDIRECT,
    }
    r = http.post(f"{fake.url}/oauth/token", json=body)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"

    r = http.post(f"{fake.url}/oauth/token", json={**body, "client_secret": "test-secret"})
    assert r.status_code == 200
    assert r.json()["token_type"] == "bearer"


def test_code_is_bound_to_its_redirect_uri(fake: FakeOutreach, http: httpx.Client) -> None:
    code = fake.authorize(redirect_uri=REDIRECT, state="s", scope="prospects.write")
    r = token_request(
        http, fake, grant_type="authorization_code", code=code, redirect_uri="http://evil/cb"
    )
    assert (r.status_code, r.json()) == (400, INVALID_GRANT)
    r = token_request(http, fake, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert r.status_code == 200


def test_authorize_rejects_unknown_client(fake: FakeOutreach, http: httpx.Client) -> None:
    r = http.get(
        f"{fake.url}/oauth/authorize",
        params={
            "client_id": "nope",
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "prospects.write",
            "state": "s",
        },
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_client"


def test_refresh_tokens_rotate(fake: FakeOutreach, http: httpx.Client) -> None:
    first = fake.issue_tokens()
    r = token_request(http, fake, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert fake.token_mints == 1

    r = token_request(http, fake, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert (r.status_code, r.json()) == (400, INVALID_GRANT)

    fake.revoke_refresh_tokens()
    r = token_request(http, fake, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert (r.status_code, r.json()) == (400, INVALID_GRANT)
    assert fake.token_mints == 1


# -- authentication and errors ---------------------------------------------------------


def test_expired_token_is_401(fake: FakeOutreach, http: httpx.Client, clock: FakeClock) -> None:
    fake.add_prospect(1)
    headers = auth(fake)
    url = f"{fake.url}/api/v2/prospects/1"
    assert http.get(url, headers=headers).status_code == 200

    clock.now += 7200
    r = http.get(url, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": "Invalid JWT token.", "description": "The access token expired."}
    assert "X-RateLimit-Limit" not in r.headers

    fresh = auth(fake)
    assert http.get(url, headers=fresh).status_code == 200
    fake.expire_all_tokens()
    r = http.get(url, headers=fresh)
    assert r.status_code == 401
    assert r.json() == {"error": "Invalid JWT token.", "description": "The access token expired."}

    r = http.get(url)
    assert r.status_code == 401
    assert r.json() == {
        "error": "Invalid JWT token.",
        "description": "No access token was provided.",
    }


def test_wrong_content_type_is_415(fake: FakeOutreach, http: httpx.Client) -> None:
    fake.add_prospect(1)
    r = patch(http, fake, 1, {"firstName": "A"}, headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    assert r.headers["Content-Type"] == JSON_API
    assert r.json() == {
        "errors": [
            {
                "id": "unsupportedMediaType",
                "title": "Unsupported Media Type",
                "details": "Expected Content-Type header to be 'application/vnd.api+json'.",
            }
        ]
    }
    assert fake.prospects[1] == {}


def test_missing_scope_is_403(make_fake: Callable[..., FakeOutreach], http: httpx.Client) -> None:
    read_only = make_fake(scopes=("prospects.read",))
    read_only.add_prospect(1)
    r = patch(http, read_only, 1, {"firstName": "A"})
    assert r.status_code == 403
    assert r.json() == {
        "errors": [
            {
                "id": "unauthorizedOauthScope",
                "title": "Unauthorized OAuth Scope",
                "detail": "Your OAuth token does not have the 'prospects.write' scope "
                "required for this request.",
            }
        ]
    }

    write_only = make_fake(scopes=("prospects.write",))
    write_only.add_prospect(1)
    r = http.get(f"{write_only.url}/api/v2/prospects/1", headers=auth(write_only))
    assert r.status_code == 403
    assert "'prospects.read'" in r.json()["errors"][0]["detail"]


def test_unknown_prospect_is_404(fake: FakeOutreach, http: httpx.Client) -> None:
    r = patch(http, fake, 42, {"firstName": "A"})
    assert r.status_code == 404
    assert r.json() == {
        "errors": [
            {
                "id": "resourceNotFound",
                "title": "Resource Not Found",
                "detail": "Could not find 'prospect' with ID '42'.",
            }
        ]
    }
    r = http.get(f"{fake.url}/api/v2/prospects/42", headers=auth(fake))
    assert r.json()["errors"][0]["detail"] == "Could not find 'prospect' with ID '42'."


@pytest.mark.parametrize("path", ["/api/v2/prospects/abc", "/api/v2/prospects", "/api/v2/nope/1"])
def test_unknown_route_is_404(fake: FakeOutreach, http: httpx.Client, path: str) -> None:
    r = http.get(f"{fake.url}{path}", headers=auth(fake))
    assert r.status_code == 404
    assert r.json()["errors"][0]["id"] == "routeNotFound"


@pytest.mark.parametrize(
    ("attributes", "status", "error_id", "pointer"),
    [
        ({"firstName": 5}, 422, "validationError", "/data/attributes/firstName"),
        ({"firstName": None}, 422, "validationError", "/data/attributes/firstName"),
        ({"tags": ["a", 1]}, 422, "validationError", "/data/attributes/tags"),
        ({"optedOut": "yes"}, 422, "validationError", "/data/attributes/optedOut"),
        ({"score": True}, 422, "validationError", "/data/attributes/score"),
        ({"custom3": 3}, 422, "validationError", "/data/attributes/custom3"),
        ({"title": "x" * 256}, 422, "validationDataTooLongError", "/data/attributes/title"),
        ({"custom9": "x" * 32_001}, 422, "validationDataTooLongError", "/data/attributes/custom9"),
        ({"name": "Ada L"}, 400, "badRequest", "/data/attributes/name"),
        ({"custom0": "realized"}, 400, "badRequest", "/data/attributes/custom0"),
        ({"custom151": "realized"}, 400, "badRequest", "/data/attributes/custom151"),
        ({"favouriteColour": "red"}, 400, "badRequest", "/data/attributes/favouriteColour"),
    ],
)
def test_invalid_attributes(
    fake: FakeOutreach,
    http: httpx.Client,
    attributes: dict[str, Any],
    status: int,
    error_id: str,
    pointer: str,
) -> None:
    fake.add_prospect(1, firstName="Ada")
    r = patch(http, fake, 1, attributes)
    assert r.status_code == status
    [error] = r.json()["errors"]
    assert error["id"] == error_id
    assert error["source"] == {"pointer": pointer}
    assert fake.prospects[1] == {"firstName": "Ada"}


def test_validation_error_exact_body(fake: FakeOutreach, http: httpx.Client) -> None:
    fake.add_prospect(1)
    r = patch(http, fake, 1, {"custom12": "x" * 32_001})
    assert r.json() == {
        "errors": [
            {
                "id": "validationDataTooLongError",
                "title": "Validation Data Too Long",
                "detail": "'custom12' is too long (maximum is 32,000 characters).",
                "source": {"pointer": "/data/attributes/custom12"},
            }
        ]
    }


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        {"data": []},
        {"data": {"type": "account", "id": 1, "attributes": {}}},
        {"data": {"type": "prospect", "id": 2, "attributes": {}}},
        {"data": {"type": "prospect", "id": "1", "attributes": {}}},
        {"data": {"type": "prospect", "id": 1}},
    ],
)
def test_malformed_document_is_400(fake: FakeOutreach, http: httpx.Client, body: Any) -> None:
    fake.add_prospect(1)
    r = patch(http, fake, 1, body=body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["id"] == "badRequest"


def test_patch_updates_store(fake: FakeOutreach, http: httpx.Client) -> None:
    fake.add_prospect(5, firstName="Ada", custom1="exited")
    attributes = {
        "lastName": "Lovelace",
        "custom1": "realized",
        "custom150": None,
        "tags": ["vip"],
        "optedOut": False,
        "score": 1.5,
    }
    r = patch(http, fake, 5, attributes)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == JSON_API
    stored = {"firstName": "Ada", **attributes}
    assert fake.prospects[5] == stored
    assert r.json() == {
        "data": {
            "type": "prospect",
            "id": 5,
            "attributes": stored,
            "links": {"self": f"{fake.url}/api/v2/prospects/5"},
        }
    }
    r = http.get(f"{fake.url}/api/v2/prospects/5", headers=auth(fake))
    assert r.json()["data"]["attributes"] == stored
    assert [req["method"] for req in fake.requests] == ["PATCH", "GET"]
    assert fake.requests[0]["path"] == "/api/v2/prospects/5"
    assert fake.requests[0]["headers"]["content-type"] == JSON_API
    assert json.loads(fake.requests[0]["body"])["data"]["attributes"] == attributes


# -- rate limit --------------------------------------------------------------------------


def test_rate_limit(
    make_fake: Callable[..., FakeOutreach], http: httpx.Client, clock: FakeClock
) -> None:
    fake = make_fake(rate_limit=3)
    fake.add_prospect(1)
    headers = auth(fake)
    url = f"{fake.url}/api/v2/prospects/1"
    for remaining in ("2", "1", "0"):
        r = http.get(url, headers=headers)
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Limit"] == "3"
        assert r.headers["X-RateLimit-Remaining"] == remaining
        assert r.headers["X-RateLimit-Reset"] == "1483228800"

    r = http.get(url, headers=headers)
    assert r.status_code == 429
    assert r.headers["Content-Type"] == JSON_API
    assert r.headers["X-RateLimit-Limit"] == "3"
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert r.headers["X-RateLimit-Reset"] == "1483228800"
    assert "Retry-After" not in r.headers
    assert r.json() == {
        "errors": [
            {
                "id": "rateLimitExceeded",
                "title": "Rate Limit Exceeded",
                "detail": "You have exceeded your permitted rate limit of 3; "
                "please try again at 2017-01-01T00:00:00.",
            }
        ]
    }

    clock.now = 1_483_228_800.0  # the next window
    r = http.get(url, headers=headers)
    assert r.status_code == 200
    assert r.headers["X-RateLimit-Remaining"] == "2"
    assert r.headers["X-RateLimit-Reset"] == "1483232400"


def test_exhaust_rate_limit_default_message(fake: FakeOutreach, http: httpx.Client) -> None:
    fake.add_prospect(1)
    fake.exhaust_rate_limit()
    r = patch(http, fake, 1, {"firstName": "A"})
    assert r.status_code == 429
    assert r.json()["errors"][0]["detail"] == (
        "You have exceeded your permitted rate limit of 10,000; "
        "please try again at 2017-01-01T00:00:00."
    )
    assert fake.prospects[1] == {}


# -- fault injection ---------------------------------------------------------------------


def test_fail_next(fake: FakeOutreach, http: httpx.Client) -> None:
    fake.add_prospect(1)
    headers = auth(fake)
    url = f"{fake.url}/api/v2/prospects/1"

    fake.fail_next(2)
    for _ in range(2):
        r = http.get(url, headers=headers)
        assert r.status_code == 502
        assert r.headers["Content-Type"] == JSON_API
        assert r.json()["errors"][0]["id"] == "badGateway"

    fake.fail_next(1, 503, retry_after=30)
    # OAuth requests do not consume API faults.
    assert (
        token_request(http, fake, grant_type="refresh_token", refresh_token="x").status_code == 400
    )
    r = http.get(url, headers=headers)
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "30"
    assert r.json() == {
        "errors": [
            {
                "id": "scheduledServerMaintenance",
                "title": "Scheduled Server Maintenance",
                "detail": "Outreach is undergoing scheduled maintenance; "
                "please try again at 2016-12-31T23:00:30.",
            }
        ]
    }

    fake.fail_next(1, 500)
    r = http.get(url, headers=headers)
    assert r.status_code == 500
    assert r.json()["errors"][0]["id"] == "internalServerError"

    assert http.get(url, headers=headers).status_code == 200


def test_drop_next(fake: FakeOutreach, http: httpx.Client) -> None:
    fake.add_prospect(1)
    fake.drop_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        patch(http, fake, 1, {"firstName": "A"})
    assert fake.prospects[1] == {}
    assert patch(http, fake, 1, {"firstName": "A"}).status_code == 200
    assert fake.prospects[1] == {"firstName": "A"}
    assert len(fake.requests) == 2


def test_delay_next(fake: FakeOutreach) -> None:
    fake.add_prospect(1)
    fake.delay_next(1, 5)
    url = f"{fake.url}/api/v2/prospects/1"
    with httpx.Client(timeout=0.1, verify=False) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get(url, headers=auth(fake))
        # The delay was consumed by one request only.
        assert client.get(url, headers=auth(fake)).status_code == 200


def test_stop_closes_the_port(make_fake: Callable[..., FakeOutreach], http: httpx.Client) -> None:
    fake = make_fake()
    assert http.get(f"{fake.url}/api/v2/prospects/1").status_code == 401
    fake.stop()
    with pytest.raises(httpx.ConnectError):
        http.get(f"{fake.url}/api/v2/prospects/1")
