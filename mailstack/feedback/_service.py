"""The feedback loop's services inside ``mailstack serve``, as ``[feedback]`` configures them."""

from __future__ import annotations

from pathlib import Path

from mailstack.compose import ComposeSettings
from mailstack.config import Settings, parse_hostport
from mailstack.lifecycle import Loop, Service
from mailstack.storage import Store

from ._intake import BounceIntake, IntakeServer
from ._postfix_log import PostfixLogReader
from ._recorder import FeedbackRecorder

__all__ = ["feedback_services"]

# How long stopping waits for the log reader to commit the chunk in hand.
_STOP_SECONDS = 30.0


def feedback_services(settings: Settings, store: Store, compose_settings: ComposeSettings) -> list[Service]:
    """The Postfix log reader (a loop) and the bounce intake (a listener), each only when configured,
    in start order: the reader starts first, so it stops last and commits what the intake recorded.

    Both are off by default: an embedded install has no Postfix log to read and nothing routed to an
    intake; the deployment that sets Postfix up (the Ansible role) turns them on.
    """
    feedback = settings.feedback
    recorder = FeedbackRecorder(feedback, store)
    services: list[Service] = []
    if feedback.postfix_log:
        reader = PostfixLogReader(
            store,
            Path(feedback.postfix_log),
            compose_settings,
            recorder,
            poll_seconds=feedback.postfix_log_poll_seconds,
        )
        services.append(Loop("postfix-log", reader.run, join_seconds=_STOP_SECONDS))
    if feedback.intake:
        host, port = parse_hostport(feedback.intake, what="feedback.intake")
        intake = BounceIntake(store, compose_settings, recorder)
        services.append(
            IntakeServer(intake, host, port, max_bytes=feedback.intake_max_bytes, hostname=settings.hostname)
        )
    return services
