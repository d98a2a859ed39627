"""`dest-engine auth` (login, import, status, logout) and the auth errors `push` gives.

Logins run the real OAuth 2 authorization code flow against the fake Outreach
server: the "browser" is a thread that follows the authorize URL's redirect to
dest-engine's callback listener on 127.0.0.1.
"""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from click.testing import CliRunner, Result

from engine.auth import AuthError, OAuthClient, login
from engine.cli import main
from engine.credentials import CredentialStore
from engine.endpoints import Endpoints
from engine.spec import load_spec

try:
    from tests import fake_outreach
    from tests.fake_outreach import FakeOutreach
except ImportError:  # tests/ itself on sys.path (pytest rootdir-less import)
    import fake_outreach  # type: ignore[import-not-found,no-redef]
    from fake_outreach import FakeOutreach  # type: ignore[import-not-found,no-redef]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ACTIVATION = ROOT / "examples" / "outreach" / "activation.json"
EXAMPLE_PROFILES = ROOT / "examples" / "outreach" / "profiles.jsonl"
CLIENT_ID, CLIENT_SECRET = "auth-test-client", "auth-test-secret-Hw93"
FORGERY = "the login answer's state does not match this login (possible forgery); try again"


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run from the checkout, credentials and ledgers in tmp folders, the fake's OAuth client."""
    monkeypatch.chdir(ROOT)
    config = tmp_path / "config"
    monkeypatch.setenv("DEST_ENGINE_CONFIG_DIR", str(config))
    monkeypatch.setenv("DEST_ENGINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DEST_ENGINE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("DEST_ENGINE_CLIENT_SECRET", CLIENT_SECRET)
    return config


@pytest.fixture
def fake() -> Iterator[FakeOutreach]:
    with FakeOutreach(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server
    assert server.errors == []


def invoke(*args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), input=stdin, prog_name="dest-engine")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def override(fake: FakeOutreach) -> list[str]:
    return ["--endpoint-override", f"https://api.outreach.io={fake.url}"]


class Browser:
    """Opens a URL the way a browser would, in a thread: GET, following redirects."""

    def __init__(self, rewrite: Callable[[str], str] | None = None) -> None:
        self.rewrite = rewrite  # e.g. forge the callback instead of asking the fake
        self.answers: list[httpx.Response] = []
        self.threads: list[threading.Thread] = []

    def open(self, url: str, *_: Any, **__: Any) -> bool:
        def visit() -> None:
            target = self.rewrite(url) if self.rewrite else url
            self.answers.append(httpx.get(target, follow_redirects=True, timeout=10))

        thread = threading.Thread(target=visit, daemon=True)
        thread.start()
        self.threads.append(thread)
        return True

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=10)


def forged_callback(url: str) -> str:
    """Skip the login page: call dest-engine's callback with a code and a wrong state."""
    query = parse_qs(urlsplit(url).query)
    redirect_uri = query["redirect_uri"][0]
    assert query["state"][0] != "forged-state"
    return redirect_uri + "?" + urlencode({"code": "stolen-code", "state": "forged-state"})


def status_lines(stored: dict[str, Any], connection: str, now: float) -> list[str]:
    def iso(ts: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

    minutes = int(stored["expires_at"] - now) // 60
    return [
        f"connection: {connection}",
        "destination: outreach (OAUTH2)",
        "scopes: prospects.read prospects.write",
        f"token: obtained {iso(stored['obtained_at'])}, expires {iso(stored['expires_at'])}"
        f" (in {minutes} min), refresh token: yes",
    ]


# --- login ------------------------------------------------------------------------------------


def test_login_end_to_end_stores_credentials_0600(
    fake: FakeOutreach, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = Browser()
    monkeypatch.setattr("webbrowser.open", browser.open)
    before = time.time()

    result = invoke(
        "auth", "login", "outreach", "--connection", "sales", "--port", "0", "--timeout", "10",
        *override(fake),
    )  # fmt: skip

    browser.join()
    assert result.exit_code == 0, result.stderr
    path = env / "connections" / "sales.json"
    assert result.stderr == (
        "Waiting for the login in your browser...\n"
        f"connected 'sales' (outreach); credentials in {path}\n"
    )
    # The browser was sent to the fake's authorize page and then to the callback.
    [answer] = browser.answers
    assert answer.status_code == 200
    assert "dest-engine is connected. You can close this tab." in answer.text
    [authorize] = [r for r in fake.requests if r["path"].startswith("/oauth/authorize")]
    query = parse_qs(urlsplit(authorize["path"]).query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["response_type"] == ["code"]
    assert query["scope"] == ["prospects.read prospects.write"]
    assert query["redirect_uri"][0].startswith("http://127.0.0.1:")
    assert query["redirect_uri"][0].endswith("/callback")
    assert len(query["state"][0]) >= 16
    # The code was exchanged once, with the same redirect URI.
    assert fake.token_mints == 1
    [token] = [r for r in fake.requests if r["path"] == "/oauth/token"]
    form = parse_qs(token["body"])
    assert form["grant_type"] == ["authorization_code"]
    assert form["redirect_uri"] == query["redirect_uri"]
    # Stored with mode 0600; the access token works on the fake.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["connection"] == "sales"
    assert stored["destination"] == "outreach"
    assert before <= stored["obtained_at"] <= time.time()
    assert stored["expires_at"] == stored["obtained_at"] + 7200
    fake.add_prospect(1)
    check = httpx.get(
        f"{fake.url}/api/v2/prospects/1",
        headers={"Authorization": f"Bearer {stored['access_token']}"},
    )
    assert check.status_code == 200
    assert result.stdout.splitlines() == status_lines(stored, "sales", time.time())
    for secret in (stored["access_token"], stored["refresh_token"], CLIENT_SECRET):
        assert secret not in result.stdout + result.stderr


def test_login_callback_with_wrong_state_is_refused(fake: FakeOutreach, env: Path) -> None:
    spec = load_spec("outreach")
    store = CredentialStore()
    browser = Browser(rewrite=forged_callback)
    with httpx.Client(timeout=10) as http:
        oauth = OAuthClient(spec, CLIENT_ID, CLIENT_SECRET, http, Endpoints(override(fake)[1:]))
        with pytest.raises(AuthError) as caught:
            login(spec, "sales", store, oauth, browser.open, port=0, timeout=10)
    browser.join()

    assert str(caught.value) == FORGERY
    [answer] = browser.answers
    assert answer.status_code == 400
    assert "dest-engine could not complete the login. Go back to the terminal." in answer.text
    assert fake.token_mints == 0  # the forged code was never exchanged
    assert [r for r in fake.requests if r["path"] == "/oauth/token"] == []
    assert not (env / "connections" / "sales.json").exists()


def test_login_command_with_wrong_state_exits_1(
    fake: FakeOutreach, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = Browser(rewrite=forged_callback)
    monkeypatch.setattr("webbrowser.open", browser.open)

    result = invoke(
        "auth", "login", "outreach", "--connection", "sales", "--port", "0", "--timeout", "10",
        *override(fake),
    )  # fmt: skip

    browser.join()
    assert result.exit_code == 1
    assert result.stderr == f"Waiting for the login in your browser...\nerror: {FORGERY}\n"
    assert result.stdout == ""
    assert fake.token_mints == 0
    assert not (env / "connections" / "sales.json").exists()


def test_login_denied_by_the_user(fake: FakeOutreach, env: Path) -> None:
    def denied(url: str) -> str:
        query = parse_qs(urlsplit(url).query)
        answer = {
            "error": "access_denied",
            "error_description": "The resource owner denied the request.",
            "state": query["state"][0],
        }
        return query["redirect_uri"][0] + "?" + urlencode(answer)

    spec = load_spec("outreach")
    browser = Browser(rewrite=denied)
    with httpx.Client(timeout=10) as http:
        oauth = OAuthClient(spec, CLIENT_ID, CLIENT_SECRET, http, Endpoints(override(fake)[1:]))
        with pytest.raises(AuthError) as caught:
            login(spec, "sales", CredentialStore(), oauth, browser.open, port=0, timeout=10)
    browser.join()

    assert str(caught.value) == (
        "the login was not completed: The resource owner denied the request."
    )
    assert fake.token_mints == 0
    assert not (env / "connections" / "sales.json").exists()


# --- import, status, logout --------------------------------------------------------------


def test_import_status_logout(fake: FakeOutreach, env: Path) -> None:
    tokens = fake.issue_tokens()

    imported = invoke("auth", "import", "outreach", "--connection", "ops", stdin=json.dumps(tokens))

    assert imported.exit_code == 0, imported.stderr
    assert imported.stderr == "imported credentials for 'ops' (outreach)\n"
    path = env / "connections" / "ops.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["access_token"] == tokens["access_token"]
    assert stored["refresh_token"] == tokens["refresh_token"]
    assert imported.stdout.splitlines() == status_lines(stored, "ops", time.time())

    status = invoke("auth", "status", "--connection", "ops")

    assert status.exit_code == 0, status.stderr
    assert status.stdout.splitlines() == status_lines(stored, "ops", time.time())
    assert status.stderr == ""

    as_json = invoke("auth", "status", "--connection", "ops", "--format", "json")

    assert as_json.exit_code == 0, as_json.stderr
    info = json.loads(as_json.stdout)
    left = info.pop("expiresInSeconds")
    assert 7_000 < left <= 7_200
    assert info == {
        "connection": "ops",
        "destination": "outreach",
        "authType": "OAUTH2",
        "scope": ["prospects.read", "prospects.write"],
        "obtainedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stored["obtained_at"])),
        "expiresAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stored["expires_at"])),
        "hasRefreshToken": True,
    }
    for result in (imported, status, as_json):
        for secret in (tokens["access_token"], tokens["refresh_token"], CLIENT_SECRET):
            assert secret not in result.stdout + result.stderr

    logout = invoke("auth", "logout", "--connection", "ops")

    assert (logout.exit_code, logout.stdout, logout.stderr) == (0, "", "logged out of 'ops'\n")
    assert not path.exists()
    again = invoke("auth", "logout", "--connection", "ops")
    assert (again.exit_code, again.stderr) == (0, "'ops' had no credentials\n")
    gone = invoke("auth", "status", "--connection", "ops")
    assert gone.exit_code == 1
    assert gone.stderr.startswith("error: connection 'ops' has no credentials; ")


def test_status_of_unknown_connection_gives_a_runnable_login_hint() -> None:
    result = invoke("auth", "status", "--connection", "ops")

    assert result.exit_code == 1
    assert "--connection ops" in result.stderr


def test_status_shows_an_expired_token(fake: FakeOutreach) -> None:
    fake.token_lifetime = 1
    tokens = fake.issue_tokens()
    imported = invoke("auth", "import", "outreach", "--connection", "old", stdin=json.dumps(tokens))
    assert imported.exit_code == 0
    time.sleep(1.1)

    result = invoke("auth", "status", "--connection", "old")

    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1].endswith(" (expired), refresh token: yes")


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("not json", "stdin is not JSON (Expecting value at line 1, column 1)"),
        (
            '{"access_token": "x",\n',
            "stdin is not JSON (Expecting property name enclosed in double quotes at line 2, column 1)",
        ),
        ("", "stdin is not JSON (Expecting value at line 1, column 1)"),
        ('["a", "b"]', "stdin must hold a JSON object"),
        ('{"refresh_token": "r"}', "the token response has no access token"),
    ],
)
def test_import_invalid_input_exits_2(env: Path, stdin: str, message: str) -> None:
    result = invoke("auth", "import", "outreach", "--connection", "ops", stdin=stdin)

    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"
    assert result.stdout == ""
    assert not (env / "connections" / "ops.json").exists()


def test_invalid_connection_name(env: Path) -> None:
    result = invoke(
        "auth", "import", "outreach", "--connection", "../etc", stdin='{"access_token": "a"}'
    )

    assert result.exit_code == 2
    assert result.stderr == (
        "error: connection name '../etc' must be letters, digits, '.', '_' or '-'"
        " (64 at most), starting with a letter or digit\n"
    )
    assert not (env.parent / "etc.json").exists()


# --- auth errors of push ------------------------------------------------------------------


def test_push_without_credentials_names_the_login_command(fake: FakeOutreach) -> None:
    result = invoke(
        "push", "outreach", "--activation", str(EXAMPLE_ACTIVATION),
        "--profiles", str(EXAMPLE_PROFILES), "--connection", "nobody", *override(fake),
    )  # fmt: skip

    assert result.exit_code == 1
    assert result.stderr == (
        "error: connection 'nobody' has no credentials; log in first:"
        " `dest-engine auth login outreach --connection nobody`\n"
    )
    assert fake.requests == []


@pytest.mark.parametrize("command", ["push", "login"])
@pytest.mark.parametrize(
    "target", ["http://example.com", "http://10.0.0.1:8080", "http://127.0.0.1.nip.io"]
)
def test_plain_http_override_to_a_remote_host_is_refused(command: str, target: str) -> None:
    item = f"https://api.outreach.io={target}"
    if command == "push":
        args = [
            "push", "outreach", "--activation", str(EXAMPLE_ACTIVATION),
            "--profiles", str(EXAMPLE_PROFILES),
        ]  # fmt: skip
        usage = "dest-engine push [OPTIONS] SPEC"
        help_ = "dest-engine push --help"
    else:
        args = ["auth", "login", "outreach", "--connection", "x", "--no-browser"]
        usage = "dest-engine auth login [OPTIONS] SPEC"
        help_ = "dest-engine auth login --help"

    result = invoke(*args, "--endpoint-override", item)

    assert result.exit_code == 2
    assert result.stderr == (
        f"Usage: {usage}\n"
        f"Try '{help_}' for help.\n"
        "\n"
        f"Error: --endpoint-override '{item}': plain http is allowed only for loopback"
        " addresses (127.0.0.1, ::1, localhost); use https\n"
    )


class BusyTokenEndpoint(FakeOutreach):
    """The token endpoint answers the first refresh with 429 and Retry-After: 7."""

    busy = 1

    def _oauth_token(self, headers: dict[str, str], body: bytes) -> Any:
        if self.busy:
            self.busy -= 1
            answer = fake_outreach._oauth_error(429, "rate_limited", "Too many tokens minted.")
            answer.headers.append(("Retry-After", "7"))
            return answer
        return super()._oauth_token(headers, body)


def test_a_refresh_answered_429_waits_as_asked_then_refreshes(tmp_path: Path) -> None:
    from engine.auth import TokenManager
    from engine.credentials import Credentials

    spec = load_spec("outreach")
    with BusyTokenEndpoint() as fake, httpx.Client() as http:
        tokens = fake.issue_tokens()
        store = CredentialStore(tmp_path)
        credentials = Credentials("acme-sales", "outreach", "OAUTH2").with_tokens(
            tokens, {}, time.time() - 3600
        )
        store.save(credentials)
        endpoints = Endpoints([f"https://api.outreach.io={fake.url}"])
        oauth = OAuthClient(spec, "test-client", "test-secret", http, endpoints)
        slept: list[float] = []
        manager = TokenManager(spec, store, credentials, oauth, sleep=slept.append)

        used = manager.auth_data()  # still valid for an hour: no refresh yet
        assert slept == [] and manager.refreshes == 0

        manager.after_unauthorized(used)  # a 401 with it: refresh; the endpoint says wait 7 s

        assert slept == [7]
        assert manager.refreshes == 1
        assert manager.credentials.access_token != tokens["access_token"]
        saved = store.load("acme-sales")
        assert saved is not None and saved.refresh_token == manager.credentials.refresh_token
