"""What comes back after delivery: delivery status from Postfix's log, the bounce intake, suppression.

* :class:`PostfixLogReader` follows Postfix's ``maillog_file`` and records, per recipient, whether the
  destination accepted, deferred or bounced each message, with the DSN code and the remote reply;
* :class:`BounceIntake` / :class:`IntakeServer` accept mail to the bounce domain (VERP return paths,
  ``mailto:`` unsubscribes, feedback-loop reports) and record what it says;
* :class:`FeedbackRecorder` turns both into events shaped for Mailjet's Event API, message statuses and
  suppressions (hard bounces and complaints at once, soft bounces after ``[feedback] soft_bounce_limit``);
* :func:`feedback_services` lists whichever of them ``[feedback]`` configures, for ``mailstack serve``'s
  lifecycle.

Classification itself is :mod:`mailstack.bounce_classify`'s; the suppression list lives in
:mod:`mailstack.storage` and is checked wherever messages are stored
(:func:`~mailstack.storage.insert_messages`).
"""

from __future__ import annotations

from mailstack.feedback._intake import BounceIntake, IntakeServer, Route
from mailstack.feedback._mailjet import error_of
from mailstack.feedback._postfix_log import LogEntry, LogKind, PostfixLogReader, parse_line
from mailstack.feedback._recorder import Bounce, FeedbackRecorder, MessageFacts, StatusReport, event_uid
from mailstack.feedback._service import feedback_services

__all__ = [
    "Bounce",
    "BounceIntake",
    "FeedbackRecorder",
    "IntakeServer",
    "LogEntry",
    "LogKind",
    "MessageFacts",
    "PostfixLogReader",
    "Route",
    "StatusReport",
    "error_of",
    "event_uid",
    "feedback_services",
    "parse_line",
]
