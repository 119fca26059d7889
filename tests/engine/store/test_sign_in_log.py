"""``SignInLog``: the UI's wrong passwords and ended sessions, the same on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine import SignInLog, Store

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def log_of(store: Store) -> SignInLog:
    assert isinstance(store, SignInLog)
    return store


def test_failures_are_kept_per_name_oldest_first_and_forgotten(store: Store) -> None:
    log = log_of(store)
    for minutes in (2, 0, 1):
        log.add_sign_in_failure("ann", at=T0 + timedelta(minutes=minutes), forget_before=T0)
    log.add_sign_in_failure("bob", at=T0, forget_before=T0)
    got = log.sign_in_failures("ann", since=T0)
    assert got == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert all(t.tzinfo is not None for t in got)
    assert log.sign_in_failures("ann", since=T0 + timedelta(seconds=30)) == got[1:]
    assert log.sign_in_failures("Ann", since=T0) == []  # names are the caller's to normalise
    # A new failure forgets the name's old ones, never another name's.
    later = T0 + timedelta(hours=1)
    log.add_sign_in_failure("ann", at=later, forget_before=later - timedelta(minutes=15))
    assert log.sign_in_failures("ann", since=T0 - timedelta(days=1)) == [later]
    assert log.sign_in_failures("bob", since=T0 - timedelta(days=1)) == [T0]
    log.clear_sign_in_failures("ann")
    assert log.sign_in_failures("ann", since=T0 - timedelta(days=1)) == []
    assert log.sign_in_failures("bob", since=T0 - timedelta(days=1)) == [T0]


def test_revoked_sessions_stay_revoked_until_they_expire(store: Store) -> None:
    log = log_of(store)
    assert not log.session_revoked("s1")
    log.revoke_session("s1", expires_at=T0 + timedelta(hours=1), now=T0)
    log.revoke_session("s1", expires_at=T0 + timedelta(hours=1), now=T0)  # twice: no error
    assert log.session_revoked("s1")
    assert not log.session_revoked("s2")
    # Revoking another session later drops the revocations that expired meanwhile.
    log.revoke_session("s2", expires_at=T0 + timedelta(hours=3), now=T0 + timedelta(hours=2))
    assert not log.session_revoked("s1")
    assert log.session_revoked("s2")
