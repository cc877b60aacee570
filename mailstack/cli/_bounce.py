"""``mailstack bounce``: classify bounces and complaints from files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["bounce_app"]

bounce_app = typer.Typer(help="Bounces and complaints: classify returned mail.", no_args_is_help=True)


@bounce_app.command("classify")
def classify_files(
    files: Annotated[
        list[Path], typer.Argument(help="Raw messages (RFC 5322) to classify; '-' reads standard input.")
    ],
) -> None:
    """Print one JSON line per recipient found: file, recipient, category, reason, status, reply_code.

    Extra keys: message_id (of the returned message) and verp_address (a mailstack return path found
    in the bounce). A message that is no bounce still gives one line (not_bounce, undefined).
    """
    from mailstack.bounce_classify import classify  # imported here: the rest of the CLI does not need it

    unreadable = 0
    for path in files:
        try:
            raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        except OSError as exc:
            print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
            unreadable += 1
            continue
        for result in classify(raw):
            line = {
                "file": str(path),
                "recipient": result.recipient,
                "category": result.category,
                "reason": result.reason,
                "status": result.status,
                "reply_code": result.reply_code,
                "message_id": result.original_message_id,
                "verp_address": result.verp_address,
            }
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    if unreadable:
        raise typer.Exit(1)
