"""Running the feedback loop inside ``mailstack serve``, as ``[feedback]`` configures it."""

from __future__ import annotations

import threading
from pathlib import Path

from mailstack.compose import ComposeSettings
from mailstack.config import Settings, parse_hostport
from mailstack.storage import Store

from ._intake import BounceIntake, IntakeServer
from ._postfix_log import PostfixLogReader
from ._recorder import FeedbackRecorder

__all__ = ["FeedbackServices"]

# How long stop() waits for the log reader to commit the chunk in hand.
_STOP_SECONDS = 30.0


class FeedbackServices:
    """The Postfix log reader (a thread) and the bounce intake (a listener), each only when configured.

    Both are off by default: an embedded install has no Postfix log to read and nothing routed to an
    intake; the deployment that sets Postfix up (the Ansible role) turns them on.
    """

    def __init__(self, settings: Settings, store: Store, compose_settings: ComposeSettings) -> None:
        feedback = settings.feedback
        self.recorder = FeedbackRecorder(feedback, store)
        self.reader: PostfixLogReader | None = None
        self.intake: IntakeServer | None = None
        if feedback.postfix_log:
            self.reader = PostfixLogReader(
                store,
                Path(feedback.postfix_log),
                compose_settings,
                self.recorder,
                poll_seconds=feedback.postfix_log_poll_seconds,
            )
        if feedback.intake:
            host, port = parse_hostport(feedback.intake, what="feedback.intake")
            self.intake = IntakeServer(
                BounceIntake(store, compose_settings, self.recorder),
                host,
                port,
                max_bytes=feedback.intake_max_bytes,
                hostname=settings.hostname,
            )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the listener (failing loudly if its port is taken) and the log reader thread."""
        if self.intake is not None:
            self.intake.start()
        if self.reader is not None:
            self._thread = threading.Thread(target=self.reader.run, args=(self._stop,), name="postfix-log")
            self._thread.start()

    def stop(self) -> None:
        """Stop taking mail first, then let the reader commit the chunk in hand."""
        if self.intake is not None:
            self.intake.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_STOP_SECONDS)
