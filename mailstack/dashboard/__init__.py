"""The web dashboard: totals and rates, a daily chart, campaigns, mailbox providers, message search with
each message's event timeline, and the suppression list, behind a login.

:mod:`._users` holds users (argon2id password hashes), sessions and login throttling; :mod:`._data` the
queries (over the statistics rollups, so the page agrees with ``/v3/REST/statcounters``); :mod:`._page`
the HTML, CSS and JavaScript. The routes live in ``mailstack.api._dashboard``.
"""

from __future__ import annotations

from mailstack.dashboard._data import (
    api_key_list,
    message_timeline,
    overview,
    search_messages,
    suppression_list,
)
from mailstack.dashboard._page import APP_CSS, APP_JS, CSP, FAVICON, dashboard_page, login_page
from mailstack.dashboard._users import (
    MIN_PASSWORD,
    LoginThrottle,
    Sessions,
    UserRecord,
    authenticate,
    create_user,
    set_password,
)

__all__ = [
    "APP_CSS",
    "APP_JS",
    "CSP",
    "FAVICON",
    "MIN_PASSWORD",
    "LoginThrottle",
    "Sessions",
    "UserRecord",
    "api_key_list",
    "authenticate",
    "create_user",
    "dashboard_page",
    "login_page",
    "message_timeline",
    "overview",
    "search_messages",
    "set_password",
    "suppression_list",
]
