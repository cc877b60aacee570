"""Consent records belong to their API key: whatever two keys do, in whatever order, each key's records
(and whether its requests were mailed or throttled) are exactly what its own actions made of them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete
from support import make_vault

from mailstack.privacy import (
    ConsentError,
    ConsentThrottledError,
    confirm_consent,
    list_consents,
    request_consent,
    withdraw_consent,
)
from mailstack.privacy._consent import RESEND_AFTER_SECONDS
from mailstack.storage import create_api_key, find_api_key
from mailstack.storage.schema import audit_log, consents
from mailstack.tokens import TokenSigner

SECRET = bytes(range(32))
SIGNER = TokenSigner(b"consent-owner-test-secret-012345")
ADDRESSES = ["ana@example.net", "ANA@example.net ", "bo@example.org"]
LISTS = ["news", "offers", "events", "jobs"]
Step = tuple[int, str, str, str, float]  # key (0 or 1), action, address, list, seconds since the last step

_steps = st.lists(
    st.tuples(
        st.sampled_from([0, 1]),
        st.sampled_from(["request", "request", "confirm", "withdraw", "withdraw-all"]),
        st.sampled_from(ADDRESSES),
        st.sampled_from(LISTS),
        st.sampled_from([1.0, 600.0, RESEND_AFTER_SECONDS + 1]),
    ),
    max_size=25,
)


@dataclass
class Outcome:
    records: dict[int, list[tuple[str | None, str, str]]] = field(default_factory=dict)
    answers: dict[int, list[str]] = field(default_factory=dict)


def _run(engine: Engine, key_ids: list[int], steps: list[Step], keys: set[int]) -> Outcome:
    """The steps of ``keys`` applied to empty tables: each key's records and request answers."""
    vault = make_vault(engine, SECRET)
    with engine.begin() as conn:
        conn.execute(delete(consents))
        conn.execute(delete(audit_log))
    now = 1_000_000.0
    outcome = Outcome(answers={key: [] for key in keys})
    tokens: dict[tuple[int, str, str], str] = {}
    for key, action, address, list_name, later in steps:
        now += later
        if key not in keys:
            continue
        with engine.begin() as conn:
            if action == "request":
                try:
                    made = request_consent(
                        conn,
                        vault,
                        SIGNER,
                        address,
                        list_name,
                        actor="test",
                        api_key_id=key_ids[key],
                        ip="192.0.2.1",
                        now=now,
                    )
                except ConsentThrottledError:
                    outcome.answers[key].append("throttled")
                    continue
                tokens[(key, address.strip().lower(), list_name)] = made.token
                outcome.answers[key].append("mailed" if made.send_confirmation else "not mailed")
            elif action == "confirm":
                token = tokens.get((key, address.strip().lower(), list_name))
                if token is not None:
                    with contextlib.suppress(ConsentError):  # a withdrawn or superseded link
                        confirm_consent(conn, vault, SIGNER, token, ip="192.0.2.2", now=now)
            else:
                which = list_name if action == "withdraw" else None
                withdraw_consent(conn, vault, address, which, api_key_id=key_ids[key], actor="test", now=now)
    with engine.connect() as conn:
        for key in keys:
            outcome.records[key] = sorted(
                (record.address, record.list_name, record.status)
                for address in {a.strip().lower() for a in ADDRESSES}
                for record in list_consents(conn, vault, address, api_key_id=key_ids[key])
            )
    return outcome


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_steps)
def test_a_key_s_consents_are_what_that_key_did(engine: Engine, steps: list[Step]) -> None:
    with engine.begin() as conn:
        key_ids = []
        for n in range(2):
            record = find_api_key(conn, create_api_key(conn, f"tenant {n}")[0])
            assert record is not None
            key_ids.append(record.id)
    together = _run(engine, key_ids, steps, {0, 1})
    for key in (0, 1):
        alone = _run(engine, key_ids, steps, {key})
        assert together.records[key] == alone.records[key]
        assert together.answers[key] == alone.answers[key]  # the other key never used up this one's quota
