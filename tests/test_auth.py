"""`dest-engine auth` (login, import, status, logout) and the auth errors `push` gives.

Logins run the real OAuth 2 authorization code flow against the fake Outreach
server: the "browser" is a thread that follows the authorize URL's redirect to
dest-engine's callback listener on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
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

from engine.auth import AuthError, OAuthClient, TokenManager, login
from engine.cli import main
from engine.credentials import Credentials, CredentialStore
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


def invoke(*args: str, stdin: str | bytes | None = None) -> Result:
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
        ('{"refresh_token": "r"}', "stdin has no access_token"),
        ('{"access_token": ""}', "stdin has no access_token"),
        (b'{"access_token": "\xff"}', "stdin is not UTF-8 text"),
        ("[" * 100_000, "stdin is JSON too deeply nested or with too long a number"),
        (
            '{"expires_in": 1' + "0" * 5000 + "}",
            "stdin is JSON too deeply nested or with too long a number",
        ),
    ],
)
def test_import_invalid_input_exits_2(env: Path, stdin: str | bytes, message: str) -> None:
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


# --- token sets that cannot be used: refused before they are stored -------------------------

TOKEN_RULE = "(a token is printable ASCII without spaces)"
LIFETIME = "must be a number of seconds from 1 to 315360000 (10 years)"
GOOD_SET = (
    '{"access_token": "acc-Tk7f", "refresh_token": "ref-Tk7f", "token_type": "bearer",'
    ' "expires_in": 7200, "scope": "prospects.read prospects.write"'
)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (
            '"access_token": "acc-Tk7f\\nX-Other: 1"',
            f"contains a line break at character 9 {TOKEN_RULE}",
        ),
        ('"access_token": "acc-Tk7f "', f"contains white space at character 9 {TOKEN_RULE}"),
        (
            '"access_token": "acc-Tk7f\\t"',
            f"contains a control character at character 9 {TOKEN_RULE}",
        ),
        (
            '"access_token": "acc-Tk7f\\u00e9"',
            f"contains a non-ASCII character at character 9 {TOKEN_RULE}",
        ),
        ('"access_token": 42', "must be a string, not 42"),
        ('"refresh_token": "ref-Tk7f\\r"', f"contains a line break at character 9 {TOKEN_RULE}"),
        ('"refresh_token": {"a": 1}', "must be a string, not an object"),
        ('"token_type": "bearer\\n"', f"contains a line break at character 7 {TOKEN_RULE}"),
        ('"token_type": true', "must be a string, not true"),
        (
            '"scope": ["prospects.read", 7]',
            "must be a string of scopes separated by spaces, not a list",
        ),
        (
            '"scope": "prospects.read\\nprospects.write"',
            "contains a line break at character 15 (scopes are printable ASCII separated by spaces)",
        ),
        ('"expires_in": 1e400', f"{LIFETIME}, not Infinity"),
        ('"expires_in": NaN', f"{LIFETIME}, not NaN"),
        ('"expires_in": -5', f"{LIFETIME}, not -5"),
        ('"expires_in": 0', f"{LIFETIME}, not 0"),
        ('"expires_in": 315360001', f"{LIFETIME}, not 315360001"),
        ('"expires_in": 1' + "0" * 40, f"{LIFETIME}, not 10000000000000000..."),
        ('"expires_in": "two hours"', f"{LIFETIME}, not a string"),
        ('"expires_in": true', f"{LIFETIME}, not true"),
        ('"expires_in": [7200]', f"{LIFETIME}, not a list"),
    ],
)
def test_import_refuses_a_token_set_unfit_for_requests(env: Path, field: str, message: str) -> None:
    """The field is named, the token never shown; the stored token set stays as it was."""
    assert (
        invoke("auth", "import", "outreach", "--connection", "ops", stdin=GOOD_SET + "}").exit_code
        == 0
    )
    path = env / "connections" / "ops.json"
    before = path.read_bytes()

    result = invoke(
        "auth", "import", "outreach", "--connection", "ops", stdin=f"{GOOD_SET}, {field}}}"
    )

    name = field.split('"')[1]
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"error: {name} in stdin {message}\n"
    assert "Tk7f" not in result.stderr
    assert path.read_bytes() == before


def test_import_accepts_a_fractional_lifetime_and_none_at_all(env: Path) -> None:
    path = env / "connections" / "ops.json"
    cases = (("7199.5", 7199.5), ("315360000", 315360000), ("null", None), ('"7200"', 7200))
    for lifetime, expected in cases:
        result = invoke(
            "auth", "import", "outreach", "--connection", "ops",
            stdin=f'{GOOD_SET}, "expires_in": {lifetime}}}',
        )  # fmt: skip

        assert result.exit_code == 0, result.stderr
        stored = json.loads(path.read_text(encoding="utf-8"))
        expires_in = (
            None if stored["expires_at"] is None else stored["expires_at"] - stored["obtained_at"]
        )
        assert expires_in == expected


def test_import_accepts_scopes_as_a_list(env: Path) -> None:
    stdin = f'{GOOD_SET}, "scope": ["prospects.read", "prospects.write"]}}'
    result = invoke("auth", "import", "outreach", "--connection", "ops", stdin=stdin)
    assert result.exit_code == 0, result.stderr
    stored = json.loads((env / "connections" / "ops.json").read_text(encoding="utf-8"))
    assert stored["scope"] == ["prospects.read", "prospects.write"]


def scaffold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth_type: str, header: str) -> None:
    """A new destination `demo` in tmp_path whose spec uses `auth_type` and sends `header`."""
    monkeypatch.chdir(tmp_path)
    assert invoke("new", "demo").exit_code == 0
    path = tmp_path / "destinations" / "demo.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    spec["customerAuthenticationConfigurations"] = [{"authType": auth_type}]
    spec["destinationServer"]["httpTemplate"]["headers"][0]["value"]["value"] = header
    path.write_text(json.dumps(spec), encoding="utf-8")
    assert invoke("validate", "demo").exit_code == 0


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (
            '{"password": "pw"}',
            'stdin has no username (BASIC takes {"username": ..., "password": ...})',
        ),
        ('{"username": 7, "password": "pw"}', "username in stdin must be a string, not 7"),
        (
            '{"username": "a:b", "password": "pw"}',
            "username in stdin contains ':', which BASIC does not allow",
        ),
        (
            '{"username": "ada", "password": "pw\\nX"}',
            "password in stdin contains a line break at character 3 (control characters are not allowed)",
        ),
        ('{"username": "ada", "password": false}', "password in stdin must be a string, not false"),
    ],
)
def test_import_basic_refuses_unusable_logins(
    tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch, stdin: str, message: str
) -> None:
    scaffold(tmp_path, monkeypatch, "BASIC", "{{ authData.username }} {{ authData.password }}")

    result = invoke("auth", "import", "demo", "--connection", "ops", stdin=stdin)

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"error: {message}\n"
    assert not (env / "connections" / "ops.json").exists()


def test_import_basic_stores_the_login(
    tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scaffold(tmp_path, monkeypatch, "BASIC", "{{ authData.username }} {{ authData.password }}")

    result = invoke(
        "auth",
        "import",
        "demo",
        "--connection",
        "ops",
        stdin='{"username": "ada", "password": "p w"}',
    )

    assert result.exit_code == 0, result.stderr
    stored = json.loads((env / "connections" / "ops.json").read_text(encoding="utf-8"))
    assert (stored["auth_type"], stored["username"], stored["password"]) == ("BASIC", "ada", "p w")
    assert "p w" not in result.stdout + result.stderr


def test_import_for_a_destination_without_credentials_exits_2(
    tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scaffold(tmp_path, monkeypatch, "NONE", "no credentials")

    result = invoke("auth", "import", "demo", "--connection", "ops", stdin='{"access_token": "a"}')

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "error: demo needs no credentials; there is nothing to import\n"
    assert not (env / "connections").exists()


def test_import_into_a_config_folder_that_cannot_be_written_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config-file"
    config.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("DEST_ENGINE_CONFIG_DIR", str(config))

    result = invoke("auth", "import", "outreach", "--connection", "ops", stdin=GOOD_SET + "}")

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: the credentials of connection 'ops' cannot be saved in {config}/connections"
        " (Not a directory); make that folder writable, or choose another with"
        " DEST_ENGINE_CONFIG_DIR\n"
    )
    assert config.read_text(encoding="utf-8") == "not a folder"


@pytest.mark.parametrize(
    "args",
    [
        ["auth", "status", "--connection", "../etc"],
        ["auth", "logout", "--connection", "../etc"],
        ["auth", "login", "outreach", "--connection", "../etc", "--no-browser"],
    ],
)
def test_invalid_connection_name_exits_2_before_anything_happens(
    env: Path, args: list[str]
) -> None:
    result = invoke(*args)

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: connection name '../etc' must be letters, digits, '.', '_' or '-'"
        " (64 at most), starting with a letter or digit\n"
    )


# --- credential files that cannot be used ------------------------------------------------------

GOOD_FILE = {
    "connection": "ops",
    "destination": "outreach",
    "auth_type": "OAUTH2",
    "access_token": "acc-Tk7f",
    "refresh_token": "ref-Tk7f",
    "expires_at": 4_000_000_000,
    "scope": ["prospects.read"],
    "obtained_at": 1_700_000_000,
}


def damaged(**fields: Any) -> str:
    return json.dumps({**GOOD_FILE, **fields})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not a JSON credentials file"),
        ("\udcff", "is not a JSON credentials file"),
        ("[1, 2]", "holds a list, not a JSON object"),
        ('{"connection": "ops"}', "lacks fields dest-engine needs, or has fields it does not know"),
        (damaged(colour="blue"), "lacks fields dest-engine needs, or has fields it does not know"),
        (damaged(connection="sales"), "holds another connection"),
        (
            damaged(access_token="acc-Tk7f\nX"),
            f"is damaged: access_token contains a line break at character 9 {TOKEN_RULE}",
        ),
        (damaged(refresh_token=5), "is damaged: refresh_token must be a string, not 5"),
        (
            damaged(expires_at=float("inf")),
            "is damaged: expires_at must be a time in epoch seconds, not Infinity",
        ),
        (
            damaged(obtained_at="2024"),
            "is damaged: obtained_at must be a time in epoch seconds, not a string",
        ),
        (
            damaged(expires_at=1e300),
            "is damaged: expires_at must be a time in epoch seconds, not 1e+300",
        ),
        (
            damaged(scope="prospects.read"),
            "is damaged: scope must be a list of scopes, not a string",
        ),
        (
            damaged(scope=["a\tb"]),
            f"is damaged: scope contains a control character at character 2 {TOKEN_RULE}",
        ),
        (damaged(auth_type=None), "is damaged: auth_type must be a string, not null"),
        (damaged(password=["x"]), "is damaged: password must be a string, not a list"),
    ],
)
def test_a_damaged_credential_file_is_named_with_the_way_out(
    fake: FakeOutreach, env: Path, content: str, problem: str
) -> None:
    """status and push say which file and what to run; logout still forgets it."""
    path = env / "connections" / "ops.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    way_out = (
        "log in again (`dest-engine auth login {spec} --connection ops`)"
        " or forget them (`dest-engine auth logout --connection ops`)"
    )

    status = invoke("auth", "status", "--connection", "ops")
    push = invoke(
        "push", "outreach", "--activation", str(EXAMPLE_ACTIVATION),
        "--profiles", str(EXAMPLE_PROFILES), "--connection", "ops", *override(fake),
    )  # fmt: skip

    message = f"error: the credentials file {path} of connection 'ops' {problem}; {way_out}\n"
    assert (status.exit_code, status.stdout) == (1, "")
    assert status.stderr == message.format(spec="SPEC")
    assert (push.exit_code, push.stdout) == (1, "")
    assert push.stderr == message.format(spec="outreach")
    assert fake.requests == []
    assert "Tk7f" not in status.stderr + push.stderr
    logout = invoke("auth", "logout", "--connection", "ops")
    assert (logout.exit_code, logout.stderr) == (0, "logged out of 'ops'\n")
    assert not path.exists()


def test_a_credential_path_that_is_a_folder_cannot_be_read_or_removed(env: Path) -> None:
    path = env / "connections" / "ops.json"
    (path / "inside").mkdir(parents=True)

    status = invoke("auth", "status", "--connection", "ops")
    logout = invoke("auth", "logout", "--connection", "ops")

    assert (status.exit_code, status.stdout) == (1, "")
    assert status.stderr == (
        f"error: the credentials file {path} of connection 'ops' cannot be read (Is a directory);"
        " log in again (`dest-engine auth login SPEC --connection ops`)"
        " or forget them (`dest-engine auth logout --connection ops`)\n"
    )
    assert (logout.exit_code, logout.stdout) == (1, "")
    assert logout.stderr == (
        f"error: the credentials file {path} of connection 'ops' cannot be removed"
        " (Is a directory); remove it by hand\n"
    )
    assert (path / "inside").is_dir()


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


# --- what the token endpoint answers ------------------------------------------------------------

WRONG_CLIENT = (
    "the OAuth app's client id or secret is wrong (the token endpoint answered HTTP 401"
    " invalid_client); check DEST_ENGINE_CLIENT_ID and DEST_ENGINE_CLIENT_SECRET"
)
LOGIN_AGAIN = "log in again: `dest-engine auth login outreach --connection acme-sales`"


class ScriptedTokenEndpoint(FakeOutreach):
    """The token endpoint answers `answer` (status and JSON body, or a non-JSON 401) instead."""

    answer: tuple[int, dict[str, Any] | None] = (401, None)

    def _oauth_token(self, headers: dict[str, str], body: bytes) -> Any:
        status, payload = self.answer
        if payload is None:
            return fake_outreach._Response(
                status, b"Unauthorized", [("Content-Type", "text/plain")]
            )
        return fake_outreach._json(status, payload)


class LineBreakInTokens(FakeOutreach):
    """The token endpoint's access tokens have a line break after their fifth character."""

    def _oauth_token(self, headers: dict[str, str], body: bytes) -> Any:
        answer = super()._oauth_token(headers, body)
        if answer.status == 200:
            tokens = json.loads(answer.body)
            tokens["access_token"] = tokens["access_token"][:5] + "\n" + tokens["access_token"][5:]
            answer.body = json.dumps(tokens).encode()
        return answer


def stored_manager(fake: FakeOutreach, store: CredentialStore, http: httpx.Client) -> TokenManager:
    """A TokenManager for connection acme-sales, its tokens issued by `fake` an hour ago."""
    spec = load_spec("outreach")
    credentials = Credentials("acme-sales", "outreach", "OAUTH2").with_tokens(
        fake.issue_tokens(), {}, time.time() - 3600
    )
    store.save(credentials)
    oauth = OAuthClient(spec, CLIENT_ID, CLIENT_SECRET, http, Endpoints(override(fake)[1:]))
    return TokenManager(spec, store, credentials, oauth)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((401, {"error": "invalid_client", "error_description": "x"}), WRONG_CLIENT),
        ((400, {"error": "invalid_client"}), WRONG_CLIENT.replace("HTTP 401", "HTTP 400")),
        ((401, None), WRONG_CLIENT.replace("HTTP 401 invalid_client", "HTTP 401")),
        (
            (401, {"error": "invalid_grant"}),
            f"the token endpoint refused (HTTP 401 invalid_grant); {LOGIN_AGAIN}",
        ),
        (
            (400, {"error": "invalid_grant"}),
            f"the token endpoint refused (HTTP 400 invalid_grant); {LOGIN_AGAIN}",
        ),
        ((400, {"error": "no\nsuch"}), f"the token endpoint refused (HTTP 400); {LOGIN_AGAIN}"),
        ((200, None), f"the token endpoint answered HTTP 200 without a JSON object; {LOGIN_AGAIN}"),
    ],
)
def test_a_refused_refresh_says_whether_to_fix_the_oauth_app_or_log_in(
    tmp_path: Path, answer: tuple[int, dict[str, Any] | None], reason: str
) -> None:
    store = CredentialStore(tmp_path)
    with ScriptedTokenEndpoint() as fake, httpx.Client() as http:
        fake.answer = answer
        manager = stored_manager(fake, store, http)
        before = store.path("acme-sales").read_bytes()

        with pytest.raises(AuthError) as caught:
            manager.after_unauthorized(manager.auth_data())

    assert str(caught.value) == f"refreshing the access token failed: {reason}"
    assert store.path("acme-sales").read_bytes() == before


def test_push_with_a_wrong_client_secret_says_to_check_the_oauth_app(
    fake: FakeOutreach, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = fake.issue_tokens()
    imported = invoke(
        "auth", "import", "outreach", "--connection", "acme-sales", stdin=json.dumps(tokens)
    )
    assert imported.exit_code == 0
    path = env / "connections" / "acme-sales.json"
    before = path.read_bytes()
    fake.expire_all_tokens()
    monkeypatch.setenv("DEST_ENGINE_CLIENT_SECRET", "wrong-secret-Zq81")

    result = invoke(
        "push", "outreach", "--activation", str(EXAMPLE_ACTIVATION),
        "--profiles", str(EXAMPLE_PROFILES), "--concurrency", "1", *override(fake),
    )  # fmt: skip

    reason = f"refreshing the access token failed: {WRONG_CLIENT}"
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"stopping: {reason}",
        f"failed OutreachId=1001: {reason}",
        "read 8 profiles; 3 skipped (2 missing-identity, 1 no-audience); 0 unchanged; 6 staged",
        "requests: 1 sent, 0 delivered, 0 rejected, 1 failed, 5 pending; 0 retried",
        f"stopped: {reason}",
    ]
    assert path.read_bytes() == before
    for secret in (
        tokens["access_token"],
        tokens["refresh_token"],
        CLIENT_SECRET,
        "wrong-secret-Zq81",
    ):
        assert secret not in result.stdout + result.stderr


def test_login_with_a_wrong_client_secret_says_to_check_the_oauth_app(
    fake: FakeOutreach, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = Browser()
    monkeypatch.setattr("webbrowser.open", browser.open)
    monkeypatch.setenv("DEST_ENGINE_CLIENT_SECRET", "wrong-secret-Zq81")

    result = invoke(
        "auth", "login", "outreach", "--connection", "sales", "--port", "0", "--timeout", "10",
        *override(fake),
    )  # fmt: skip

    browser.join()
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"Waiting for the login in your browser...\nerror: {WRONG_CLIENT}\n"
    assert "wrong-secret-Zq81" not in result.stderr
    assert not (env / "connections").exists()


def test_login_refuses_a_token_with_a_line_break(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = Browser()
    monkeypatch.setattr("webbrowser.open", browser.open)
    with LineBreakInTokens(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as fake:
        result = invoke(
            "auth", "login", "outreach", "--connection", "sales", "--port", "0",
            "--timeout", "10", *override(fake),
        )  # fmt: skip
        browser.join()

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "Waiting for the login in your browser...\n"
        f"error: access_token in the token response contains a line break at character 6 {TOKEN_RULE}\n"
    )
    assert not (env / "connections").exists()


def test_a_refresh_refuses_a_token_with_a_line_break(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    with (
        LineBreakInTokens(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as fake,
        httpx.Client() as http,
    ):
        manager = stored_manager(fake, store, http)
        before = store.path("acme-sales").read_bytes()

        with pytest.raises(AuthError) as caught:
            manager.after_unauthorized(manager.auth_data())

    assert str(caught.value) == (
        "refreshing the access token failed: access_token in the token response contains"
        f" a line break at character 6 {TOKEN_RULE}; {LOGIN_AGAIN}"
    )
    assert store.path("acme-sales").read_bytes() == before


def test_a_refresh_that_cannot_be_saved_fails_the_run(fake: FakeOutreach, tmp_path: Path) -> None:
    """The old refresh token is spent: say so, never carry on with tokens lost at exit."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder", encoding="utf-8")
    with httpx.Client() as http:
        manager = stored_manager(fake, CredentialStore(tmp_path), http)
        manager.store = CredentialStore(blocked)
        used = manager.auth_data()

        with pytest.raises(AuthError) as caught:
            manager.after_unauthorized(used)

    assert str(caught.value) == (
        "refreshing the access token failed: the credentials of connection 'acme-sales' cannot"
        f" be saved in {blocked}/connections (Not a directory); make that folder writable, or"
        f" choose another with DEST_ENGINE_CONFIG_DIR; {LOGIN_AGAIN}"
    )
    assert manager.credentials.access_token == used["accessToken"]
    assert manager.refreshes == 0


def test_login_into_a_config_folder_that_cannot_be_written_exits_1(
    fake: FakeOutreach, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config-file"
    config.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("DEST_ENGINE_CONFIG_DIR", str(config))
    browser = Browser()
    monkeypatch.setattr("webbrowser.open", browser.open)

    result = invoke(
        "auth", "login", "outreach", "--connection", "sales", "--port", "0", "--timeout", "10",
        *override(fake),
    )  # fmt: skip

    browser.join()
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "Waiting for the login in your browser...\n"
        f"error: the credentials of connection 'sales' cannot be saved in {config}/connections"
        " (Not a directory); make that folder writable, or choose another with"
        " DEST_ENGINE_CONFIG_DIR\n"
    )


def test_login_on_a_port_in_use_exits_1(env: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = invoke("auth", "login", "outreach", "--connection", "sales", "--port", str(port))

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: cannot listen on 127.0.0.1:{port} for the login's answer (Address already in use);"
        " choose another with --port\n"
    )


@pytest.mark.parametrize("timeout", ["0", "inf", "nan", "1e20"])
def test_login_timeout_out_of_range_is_a_usage_error(timeout: str) -> None:
    result = invoke("auth", "login", "outreach", "--connection", "sales", "--timeout", timeout)

    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].startswith("Error: Invalid value for '--timeout': ")
