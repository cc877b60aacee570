"""``mailstack template render``: Mailjet's template language from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["template_app"]

template_app = typer.Typer(help="Mailjet's template language.", no_args_is_help=True)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _json_object(option: str, value: str) -> dict[str, Any]:
    """Parse ``--vars``/``--data``: a JSON object, or ``@FILE`` holding one."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(f"{option}: cannot read {value[1:]}: {exc}", 2) from None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _fail(f"{option} is not valid JSON: {exc}", 2) from None
    if not isinstance(parsed, dict):
        raise _fail(f"{option} must be a JSON object, got {type(parsed).__name__}", 2)
    return parsed


_Vars = Annotated[
    str, typer.Option("--vars", help="The message Variables: a JSON object, or @FILE holding one.")
]
_Data = Annotated[
    str | None, typer.Option("--data", help="Contact properties ({{data:...}}): a JSON object, or @FILE.")
]
_Html = Annotated[bool, typer.Option("--html", help="HTML-escape printed values, as for HTMLPart.")]


@template_app.command("render")
def render_command(variables: _Vars = "{}", data: _Data = None, html: _Html = False) -> None:
    """Render a template read from stdin to stdout; a template error exits 1 with the error on stderr."""
    from mailstack.templates import TemplateError, render

    parsed_vars = _json_object("--vars", variables)
    parsed_data = _json_object("--data", data) if data is not None else None
    try:
        template = sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(f"the template on stdin is not UTF-8: {exc}", 2) from None
    try:
        output = render(template, parsed_vars, data=parsed_data, html=html)
    except TemplateError as exc:
        raise _fail(str(exc), 1) from None
    # Variables may carry lone surrogates (valid JSON escapes, not encodable): replace, don't crash.
    sys.stdout.buffer.write(output.encode("utf-8", "replace"))
    sys.stdout.flush()
