"""Open and click tracking, unsubscribe tokens and machine-traffic detection.

Pure parts (no I/O): :func:`rewrite_links` / :func:`insert_pixel` rewrite HTML, :class:`TrackingUrls`
mints and checks the signed URLs, :class:`Detector` flags privacy proxies and link scanners, and
:class:`Tracker` applies all of it to an envelope before composition. :class:`EventRecorder` records the
hits asynchronously; the HTTP routes live in ``mailstack.api._tracking``.
"""

from __future__ import annotations

from mailstack.config import Settings
from mailstack.tokens import TokenSigner
from mailstack.tracking._apply import Tracker, tracking_wanted
from mailstack.tracking._detect import Detector, Verdict
from mailstack.tracking._links import (
    MAX_TRACKED_LINKS,
    MAX_TRACKED_URL,
    TrackedLink,
    insert_pixel,
    rewrite_links,
)
from mailstack.tracking._recorder import EventRecorder, TrackedEvent, store_events
from mailstack.tracking._tokens import ClickTarget, TrackingUrls

__all__ = [
    "MAX_TRACKED_LINKS",
    "MAX_TRACKED_URL",
    "ClickTarget",
    "Detector",
    "EventRecorder",
    "TrackedEvent",
    "TrackedLink",
    "Tracker",
    "TrackingUrls",
    "Verdict",
    "insert_pixel",
    "rewrite_links",
    "store_events",
    "tracker_for",
    "tracking_wanted",
]


def tracker_for(settings: Settings, signer: TokenSigner) -> Tracker:
    """The :class:`Tracker` of a deployment: its public URL, its token signer and account defaults."""
    return Tracker(
        TrackingUrls(signer, settings.public_url),
        opens=settings.tracking.opens,
        clicks=settings.tracking.clicks,
    )
