"""Signed sessions and the sign-in lock-out under attack (``gorch_ui.sessions``, no Streamlit).

A forged token (altered payload, another secret, garbage), an expired one and one ended by
signing out are refused; a viewer's valid session still cannot act; five wrong passwords
lock a name, the right password included, until the lock ends on a controllable clock. The
wrong passwords and ended sessions live in the database, so a second server process on it
(a second ``SignIn`` over its own store) agrees.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine import Engine, ManualClock, MemoryStore, SQLModelStore, WorkflowStatus
from engine.examples import WORKFLOWS
from engine.examples.demo import seed_demo
from gorch_ui import services
from gorch_ui.access import (
    AuthConfig,
    AuthConfigError,
    Operator,
    PermissionDenied,
    Role,
    auth_config,
)
from gorch_ui.auth import cookie_script
from gorch_ui.sessions import (
    SecretError,
    SessionRefused,
    SignIn,
    SignInRefused,
    issue,
    load_secret,
    lock_end,
    secret_path,
    signing_key,
    verify,
)
from tests.ui.helpers import user_wait

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
SECRET = b"s" * 64
CONFIG = AuthConfig("password", password="s3cret", viewer_password="peek")
ANA = Operator("ana", Role.OPERATOR, "password")
VIC = Operator("vic", Role.VIEWER, "password")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(params=["memory", "sqlite"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    """Where the sign-in log lives: a memory store, or a SQLite file (``sqlite_url``)."""
    if request.param == "memory":
        return MemoryStore()
    return SQLModelStore(f"sqlite:///{tmp_path / 'gorch.db'}")


@pytest.fixture
def service(log: object, clock: ManualClock) -> SignIn:
    return SignIn(CONFIG, SECRET, log, clock)


def _payload(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def with_payload(token: str, **changes: object) -> str:
    """The token with its payload changed and its old signature kept: a forgery."""
    v, _, sig = token.split(".")
    data = {**_payload(token), **changes}
    body = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{v}.{body}.{sig}"


# -- tokens -----------------------------------------------------------------------------------


def test_a_token_round_trips_and_holds_no_password(service: SignIn) -> None:
    token, session = service.start(ANA)
    assert service.resume(token) == session
    assert session.operator == ANA and session.expires_at == T0 + timedelta(hours=12)
    assert "s3cret" not in token and "s3cret" not in json.dumps(_payload(token))


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: with_payload(t, role="operator"),  # a viewer promoting itself
        lambda t: with_payload(t, name="boss"),
        lambda t: with_payload(t, exp=2_000_000_000),  # extending its own expiry
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # a bad signature
        lambda t: t.rsplit(".", 1)[0] + ".",  # no signature
        lambda t: "v2." + t.split(".", 1)[1],
        lambda t: t.replace(".", "", 1),
        lambda t: "",
        lambda t: "v1.%%%.###",
        lambda t: issue(
            signing_key(b"another secret" * 4, CONFIG), VIC, now=T0, ttl=timedelta(hours=1)
        )[0],
    ],
)
def test_forged_tokens_are_refused(
    service: SignIn, forge: object, caplog: pytest.LogCaptureFixture
) -> None:
    token, _ = service.start(VIC)
    forged = forge(token)  # type: ignore[operator]
    with caplog.at_level(logging.WARNING, "gorch_ui.sessions"), pytest.raises(SessionRefused):
        service.resume(forged)
    assert "refused a session token" in caplog.text
    assert not forged or forged not in caplog.text  # the log never holds a token


def test_a_token_expires(service: SignIn, clock: ManualClock) -> None:
    token, _ = service.start(ANA)
    clock.advance(timedelta(hours=11, minutes=59))
    service.resume(token)
    clock.advance(timedelta(minutes=1))
    with pytest.raises(SessionRefused, match="expired"):
        service.resume(token)


def test_a_token_issued_in_the_future_is_refused() -> None:
    key = signing_key(SECRET, CONFIG)
    token, _ = issue(key, ANA, now=T0 + timedelta(hours=1), ttl=timedelta(hours=2))
    with pytest.raises(SessionRefused, match="future"):
        verify(key, token, now=T0)


def test_signing_out_ends_the_session_in_every_process(tmp_path: Path, clock: ManualClock) -> None:
    url = f"sqlite:///{tmp_path / 'gorch.db'}"
    one = SignIn(CONFIG, SECRET, SQLModelStore(url), clock)
    two = SignIn(CONFIG, SECRET, SQLModelStore(url), clock)  # another server process
    token, session = one.start(ANA)
    other, _ = one.start(ANA)  # the same person in another browser
    assert two.resume(token) == session
    one.end(session)
    for service in (one, two):
        with pytest.raises(SessionRefused, match="signing out"):
            service.resume(token)
        service.resume(other)  # only that session ended


def test_changing_a_password_or_the_mode_ends_every_session(service: SignIn) -> None:
    token, _ = service.start(ANA)
    changed = SignIn(AuthConfig("password", password="new"), SECRET, service.log, service.clock)
    with pytest.raises(SessionRefused, match="bad signature"):
        changed.resume(token)
    none = SignIn(AuthConfig("none"), SECRET, service.log, service.clock)
    anonymous, _ = none.start(Operator("ana", Role.OPERATOR, "none"))
    forged = SignIn(AuthConfig("none"), SECRET, service.log, service.clock)
    forged.key = service.key  # even signed with the right key, a "none" session is refused
    token, _ = forged.start(Operator("ana", Role.OPERATOR, "none"))
    with pytest.raises(SessionRefused, match="sign-in mode"):
        service.resume(token)
    with pytest.raises(SessionRefused):
        service.resume(anonymous)


def test_a_viewers_valid_session_cannot_act(tmp_path: Path, service: SignIn) -> None:
    engine = Engine(SQLModelStore(f"sqlite:///{tmp_path / 'wf.db'}"), WORKFLOWS)
    seed_demo(engine)
    token, _ = service.start(VIC)
    op = service.resume(token).operator  # valid: the signature holds
    wait = user_wait(engine)
    before = engine.history(wait.workflow_id)
    with pytest.raises(PermissionDenied, match="viewer"):
        services.approve(engine, op, wait)
    with pytest.raises(PermissionDenied):
        services.cancel(engine, op, wait.workflow_id, "sneaky")
    assert engine.get(wait.workflow_id).status is WorkflowStatus.WAITING
    assert engine.history(wait.workflow_id) == before


# -- the lock-out -----------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_name_until_the_lock_ends(
    service: SignIn, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gorch_ui.sessions")
    for left in (4, 3, 2, 1):
        with pytest.raises(SignInRefused) as e:
            service.password("eve", "guess")
        assert e.value.attempts_left == left and e.value.locked_until is None
        clock.advance(timedelta(seconds=10))
    with pytest.raises(SignInRefused) as e:
        service.password("eve", "guess")  # the fifth locks
    locked_until = clock.now() + timedelta(minutes=15)
    assert e.value.locked_until == locked_until
    # The sixth, with the right password, is refused without being checked; so is any
    # spelling of the name, and attempts while locked do not extend the lock.
    for name in ("eve", " EVE ", "Eve"):
        with pytest.raises(SignInRefused, match="refused until") as e:
            service.password(name, "s3cret")
        assert e.value.locked_until == locked_until
    assert service.password("ann", "s3cret").name == "ann"  # another name is not locked
    refusals = [r.getMessage() for r in caplog.records if "refused for" in r.getMessage()]
    assert len(refusals) == 5 + 3 and sum("locked out" in r for r in refusals) == 3
    clock.advance(timedelta(minutes=14, seconds=59))
    with pytest.raises(SignInRefused, match="refused until"):
        service.password("eve", "s3cret")
    clock.advance(timedelta(seconds=1))
    assert service.password("eve", "s3cret") == Operator("eve", Role.OPERATOR, "password")
    assert service.log.sign_in_failures("eve", since=T0) == []  # a success forgets them


def test_the_lock_survives_a_restart_and_is_shared(tmp_path: Path, clock: ManualClock) -> None:
    url = f"sqlite:///{tmp_path / 'gorch.db'}"
    first = SignIn(CONFIG, SECRET, SQLModelStore(url), clock)
    for _ in range(5):
        with pytest.raises(SignInRefused):
            first.password("eve", "nope")
    restarted = SignIn(CONFIG, SECRET, SQLModelStore(url), clock)
    with pytest.raises(SignInRefused, match="refused until"):
        restarted.password("eve", "s3cret")


def test_wrong_passwords_spread_out_do_not_lock(service: SignIn, clock: ManualClock) -> None:
    for _ in range(6):
        with pytest.raises(SignInRefused) as e:
            service.password("eve", "typo")
        assert e.value.locked_until is None
        clock.advance(timedelta(minutes=4))  # four fall within any 15 minutes, never five
    assert service.password("eve", "peek").role is Role.VIEWER


def test_the_limits_are_configurable(log: object, clock: ManualClock) -> None:
    cfg = auth_config(
        {"GORCH_UI_PASSWORD": "pw", "GORCH_UI_LOCKOUT_ATTEMPTS": "2",
         "GORCH_UI_LOCKOUT_MINUTES": "1", "GORCH_UI_SESSION_HOURS": "0.5"},
        oidc=False,
    )  # fmt: skip
    service = SignIn(cfg, SECRET, log, clock)
    for _ in range(2):
        with pytest.raises(SignInRefused):
            service.password("eve", "x")
    with pytest.raises(SignInRefused, match="refused until"):
        service.password("eve", "pw")
    clock.advance(timedelta(minutes=1))
    _, session = service.start(service.password("eve", "pw"))
    assert session.expires_at == clock.now() + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("GORCH_UI_LOCKOUT_ATTEMPTS", "0"),
        ("GORCH_UI_LOCKOUT_ATTEMPTS", "2.5"),
        ("GORCH_UI_LOCKOUT_MINUTES", "-1"),
        ("GORCH_UI_SESSION_HOURS", "nan"),
        ("GORCH_UI_SESSION_HOURS", "soon"),
    ],
)
def test_bad_limits_are_a_clear_error(var: str, value: str) -> None:
    with pytest.raises(AuthConfigError, match=var):
        auth_config({var: value}, oidc=False)


def test_no_name_or_a_huge_one_is_refused_and_not_counted(service: SignIn) -> None:
    with pytest.raises(SignInRefused, match="Enter your name"):
        service.password("   ", "s3cret")
    with pytest.raises(SignInRefused, match="at most 200"):
        service.password("x" * 201, "s3cret")
    assert service.log.sign_in_failures("x" * 201, since=T0) == []
    token, _ = service.start(service.password("é" * 200, "s3cret"))
    assert len(token) < 3000  # fits in a cookie


def test_lock_end() -> None:
    window = timedelta(minutes=15)
    at = [T0 + timedelta(minutes=m) for m in (0, 1, 2, 3, 4)]
    assert lock_end(at[:4], limit=5, window=window) is None
    assert lock_end(at, limit=5, window=window) == at[4] + window
    spread = [T0 + timedelta(minutes=4 * m) for m in range(5)]  # first to fifth: 16 minutes
    assert lock_end(spread, limit=5, window=window) is None


# -- the secret and the cookie ----------------------------------------------------------------


def test_the_secret_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gorch.db'}"
    path = secret_path({}, url)
    assert path == tmp_path / "gorch.db.ui-secret"
    first = load_secret({}, url)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) == 64
    assert load_secret({}, url) == first
    os.chmod(path, 0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_secret({}, url)


def test_where_the_secret_lives(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert secret_path(env, "postgresql+psycopg://db/x") == tmp_path / "gorch" / "ui-secret"
    assert secret_path(env, "memory://") == tmp_path / "gorch" / "ui-secret"
    assert secret_path(env, "sqlite:///:memory:") == tmp_path / "gorch" / "ui-secret"
    assert secret_path(env, "sqlite+pysqlite:////d/g.db?x=1") == Path("/d/g.db.ui-secret")
    given = {"GORCH_UI_SECRET_FILE": str(tmp_path / "s")}
    assert secret_path(given, "sqlite:///x.db") == tmp_path / "s"
    assert load_secret({"GORCH_UI_SECRET": "k" * 32}, "memory://") == b"k" * 32
    with pytest.raises(SecretError, match="at least 32"):
        load_secret({"GORCH_UI_SECRET": "short"}, "memory://")


def test_the_cookie_script_takes_only_a_token() -> None:
    token, _ = SignIn(CONFIG, SECRET, MemoryStore(), ManualClock(T0)).start(ANA)
    script = cookie_script(token, 3600)
    assert f"gorch_session={token}; Path=/; Max-Age=3600; SameSite=Strict" in script
    assert "'https:' ? '; Secure'" in script  # Secure on https only
    assert "Max-Age=0" in cookie_script(None, 3600)  # deleting it
    for hostile in ('"; alert(1); "', "</script><script>alert(1)", "a b", "x\n"):
        with pytest.raises(ValueError):
            cookie_script(hostile, 60)


def test_a_store_without_a_sign_in_log_falls_back_to_one_per_process(clock: ManualClock) -> None:
    for _ in range(5):  # a new SignIn per page run, as the gate makes them
        with pytest.raises(SignInRefused):
            SignIn(CONFIG, SECRET, object(), clock).password("zed", "nope")
    with pytest.raises(SignInRefused, match="refused until"):
        SignIn(CONFIG, SECRET, object(), clock).password("zed", "s3cret")
