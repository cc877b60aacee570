from __future__ import annotations

import getpass
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine

from mailstack.addresses import SendingDomainError, sending_domain
from mailstack.cli._bounce import bounce_app
from mailstack.cli._common import fail
from mailstack.cli._dashboard import dashboard_app
from mailstack.cli._privacy import privacy_app
from mailstack.cli._retention import purge_command
from mailstack.cli._suppression import suppression_app
from mailstack.cli._template import template_app
from mailstack.config import CONFIG_FILE, ConfigError, Settings, load_settings, render_default_config
from mailstack.keyring import Keyring
from mailstack.privacy import Vault, convert_plaintext
from mailstack.storage import (
    API_SCOPES,
    DEFAULT_API_SCOPES,
    create_api_key,
    create_storage_engine,
    list_outbox,
    migrate,
    parse_scopes,
    set_api_key_scopes,
)

app = typer.Typer(
    help="Self-hosted email sending: Mailjet-compatible API, DKIM, Postfix delivery.", no_args_is_help=True
)
dkim_app = typer.Typer(help="DKIM keys: list, rotate and import.", no_args_is_help=True)
outbox_app = typer.Typer(help="The sandbox outbox: mail kept instead of sent.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(dkim_app, name="dkim")
app.add_typer(outbox_app, name="outbox")
app.add_typer(apikey_app, name="apikey")
app.add_typer(template_app, name="template")
app.add_typer(suppression_app, name="suppression")
app.add_typer(bounce_app, name="bounce")
app.add_typer(dashboard_app, name="dashboard")
app.add_typer(privacy_app, name="privacy")
privacy_app.command("purge")(purge_command)  # the retention purge (mailstack/cli/_retention.py)

err = Console(stderr=True)
DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar="MAILSTACK_DATA_DIR", help="Directory holding mailstack.toml and data."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def _sending_domain(text: str) -> str:
    # The rule the Send API and SMTP apply to a From domain: what init accepts, they accept.
    try:
        return sending_domain(text)
    except SendingDomainError as exc:
        raise fail(str(exc)) from None


ScopeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--scope",
        help="What the key may do: send, read, webhooks, suppressions, consents, privacy (admin), or *; "
        "repeat or separate with commas. Default: all but privacy.",
    ),
]


def _scopes(values: list[str]) -> frozenset[str]:
    try:
        return parse_scopes(",".join(values))
    except ValueError as exc:
        raise fail(str(exc)) from None


def _audit_key(conn: Connection, action: str, public_key: str, scopes: frozenset[str]) -> None:
    # Who handed out which powers is part of the audit trail (a privacy key can export anyone).
    from mailstack.privacy import record_audit

    detail = {"api_key": public_key, "scopes": [s for s in API_SCOPES if s in scopes]}
    record_audit(conn, actor=f"cli:{getpass.getuser()}", action=action, detail=detail)


def _settings(data_dir: Path, overrides: dict[str, Any] | None = None) -> Settings:
    try:
        return load_settings(data_dir, overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _keyring(settings: Settings) -> Keyring:
    try:
        return Keyring(settings.secret_key())
    except ConfigError as exc:
        raise fail(str(exc)) from None


def open_vault(settings: Settings, engine: Engine) -> Vault:
    """The vault that seals and opens personal data in the settings' database."""
    return Vault.from_settings(engine, _keyring(settings), settings.privacy)


@app.command()
def init(
    data_dir: DataDir,
    domain: Annotated[str, typer.Option(help="The sending domain (DKIM d=, From domain).")],
    as_json: AsJson = False,
) -> None:
    """Create the configuration, the database, DKIM keys (RSA-2048 + Ed25519) and an API key."""
    from mailstack.domains import create_domain_keys

    domain = _sending_domain(domain)
    if (data_dir / CONFIG_FILE).exists():
        raise fail(f"{data_dir / CONFIG_FILE} already exists: this data directory is initialised")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret_path = data_dir / "secret.key"
    if not secret_path.exists() and not os.environ.get("MAILSTACK_SECRET_KEY"):
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    (data_dir / CONFIG_FILE).write_text(render_default_config(domain))
    settings = _settings(data_dir)
    engine = create_storage_engine(settings.database_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            keys = create_domain_keys(conn, _keyring(settings), domain)
            api_key, api_secret = create_api_key(conn, "default")
    finally:
        engine.dispose()
    result = {
        "config": str((data_dir / CONFIG_FILE).resolve()),
        "api_key": api_key,
        "api_secret": api_secret,
        "dkim": [key.to_json() for key in keys],
    }
    if as_json:
        print(json.dumps(result))
        return
    print(f"Initialised {result['config']}")
    print(f"API key:    {api_key}\nAPI secret: {api_secret}   (shown once; only its hash is stored)")
    print("Publish these DNS TXT records:")
    for key in keys:
        print(f'  {key.dns_name}  TXT  "{key.txt}"')


@app.command()
def serve(
    data_dir: DataDir,
    http: Annotated[str | None, typer.Option(help="Listen address HOST:PORT for the API.")] = None,
    relay: Annotated[
        str | None, typer.Option(help="SMTP relay HOST:PORT (Postfix); default: sandbox outbox.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Delivery worker threads.")] = None,
    smtp: Annotated[
        str | None,
        typer.Option(help="SMTP submission listen address HOST:PORT (STARTTLS + AUTH); default: off."),
    ] = None,
) -> None:
    """Run the API and the delivery workers until SIGTERM (which drains in-flight work)."""
    from mailstack.observability import configure_logging
    from mailstack.serve import serve as run_service

    overrides: dict[str, Any] = {}
    if http:
        overrides["server"] = {"http": http}
    if relay is not None or workers is not None:
        overrides["delivery"] = {
            **({"relay": relay} if relay is not None else {}),
            **({"workers": workers} if workers is not None else {}),
        }
    if smtp is not None:
        overrides["smtp"] = {"listen": smtp}
    settings = _settings(data_dir, overrides)
    configure_logging()
    raise typer.Exit(run_service(settings))


@app.command("migrate")
def migrate_command(data_dir: DataDir) -> None:
    """Upgrade the database schema to this version of mailstack."""
    settings = _settings(data_dir)
    engine = create_storage_engine(settings.database_url)
    try:
        migrate(engine)
        # The schema step cannot see the master secret; sealing old plaintext rows needs it.
        converted = convert_plaintext(engine, open_vault(settings, engine))
    finally:
        engine.dispose()
    for table, count in sorted(converted.items()):
        print(f"sealed {count} plaintext row(s) of {table}")
    print("database schema is up to date")


@apikey_app.command("create")
def apikey_create(
    data_dir: DataDir,
    name: Annotated[str, typer.Option(help="A label.")] = "default",
    scope: ScopeOption = None,
    as_json: AsJson = False,
) -> None:
    """Create an API key; the secret is printed once and stored only as a hash."""
    granted = _scopes(scope) if scope else DEFAULT_API_SCOPES
    settings = _settings(data_dir)
    engine = create_storage_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            api_key, api_secret = create_api_key(conn, name, granted)
            _audit_key(conn, "apikey-create", api_key, granted)
    finally:
        engine.dispose()
    scopes = [s for s in API_SCOPES if s in granted]
    if as_json:
        print(json.dumps({"api_key": api_key, "api_secret": api_secret, "scopes": scopes}))
    else:
        print(f"API key:    {api_key}\nAPI secret: {api_secret}\nScopes:     {','.join(scopes)}")


@apikey_app.command("scopes")
def apikey_scopes(
    data_dir: DataDir,
    api_key: Annotated[str, typer.Argument(help="The public API key.")],
    scope: ScopeOption = None,
) -> None:
    """Replace what an API key may do, e.g. ``--scope send`` or ``--scope read,privacy``."""
    if not scope:
        raise fail(f"give --scope (known: {', '.join(API_SCOPES)}, or * for all)")
    granted = _scopes(scope)
    settings = _settings(data_dir)
    engine = create_storage_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            found = set_api_key_scopes(conn, api_key, granted)
            if found:
                _audit_key(conn, "apikey-scopes", api_key, granted)
    finally:
        engine.dispose()
    if not found:
        raise fail(f"no API key {api_key!r}", 1)
    print(f"{api_key}: {','.join(s for s in API_SCOPES if s in granted)}")


@dkim_app.command("list")
def dkim_list(
    data_dir: DataDir, domain: Annotated[str | None, typer.Option()] = None, as_json: AsJson = False
) -> None:
    """Every published selector with its DNS record."""
    from mailstack.domains import published_keys

    settings = _settings(data_dir)
    engine = create_storage_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            keys = published_keys(conn, _keyring(settings), domain=domain)
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps([{**k.to_json(), "domain": k.domain, "activates_at": k.activates_at} for k in keys]))
        return
    for key in keys:
        since = datetime.fromtimestamp(key.activates_at, UTC).isoformat(timespec="seconds")
        print(f'{key.dns_name}  TXT  "{key.txt}"   ; {key.algorithm}, signs from {since}')


@dkim_app.command("rotate")
def dkim_rotate(
    data_dir: DataDir,
    domain: Annotated[str, typer.Option(help="The domain whose keys to rotate.")],
    activate_in: Annotated[
        float, typer.Option(help="Hours before the new keys sign (time for the DNS records to spread).")
    ] = 48.0,
    as_json: AsJson = False,
) -> None:
    """Add new RSA and Ed25519 selectors; old selectors stay valid (keep their DNS records published)."""
    from mailstack.domains import create_domain_keys

    domain = _sending_domain(domain)
    if activate_in < 0:
        raise fail("--activate-in must be zero or more hours")
    settings = _settings(data_dir)
    engine = create_storage_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            keys = create_domain_keys(
                conn, _keyring(settings), domain, activates_at=time.time() + activate_in * 3600
            )
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps({"domain": domain, "dkim": [k.to_json() for k in keys]}))
        return
    print("New selectors; publish these DNS TXT records now:")
    for key in keys:
        print(f'  {key.dns_name}  TXT  "{key.txt}"')
    print(
        f"They sign from {datetime.fromtimestamp(keys[0].activates_at, UTC).isoformat(timespec='seconds')};"
    )
    print("keep the old selectors' records published until mail signed with them has been delivered.")


@dkim_app.command("import")
def dkim_import(
    data_dir: DataDir,
    domain: Annotated[str, typer.Option(help="The signing domain (d=).")],
    selector: Annotated[str, typer.Option(help="The selector (s=) the key is published under.")],
    algorithm: Annotated[str, typer.Option(help="rsa-sha256 or ed25519-sha256; must match the key's type.")],
    pem_file: Annotated[
        Path, typer.Option("--pem-file", help="The private key: PEM, PKCS#8 or PKCS#1, unencrypted.")
    ],
    activate_in: Annotated[
        float, typer.Option(help="Hours before the key signs (0: its DNS record is published already).")
    ] = 0.0,
    as_json: AsJson = False,
) -> None:
    """Store a provided private key like a generated one (encrypted at rest); importing the key a selector
    already holds changes nothing, another key under that selector is refused."""
    from sqlalchemy.exc import IntegrityError

    from mailstack.domains import DuplicateSelectorError, ImportedKey, import_domain_key
    from mailstack.signing import Algorithm

    algorithms: tuple[str, ...] = get_args(Algorithm)

    domain = _sending_domain(domain)
    if algorithm not in algorithms:
        raise fail(f"--algorithm must be one of {', '.join(algorithms)}, got {algorithm!r}")
    if activate_in < 0:
        raise fail("--activate-in must be zero or more hours")
    try:
        pem = pem_file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {pem_file}: {exc.strerror}") from None
    checked: Algorithm = algorithm  # type: ignore[assignment]  # checked against the algorithms above
    settings = _settings(data_dir)
    keyring = _keyring(settings)
    engine = create_storage_engine(settings.database_url)

    def store() -> ImportedKey:
        with engine.begin() as conn:
            return import_domain_key(
                conn, keyring, domain, selector, checked, pem, activates_at=time.time() + activate_in * 3600
            )

    try:
        try:
            imported = store()
        except IntegrityError:
            # Another sender imported the same selector at the same moment: compare with what it stored.
            imported = store()
    except DuplicateSelectorError as exc:
        raise fail(str(exc), code=1) from None
    except ValueError as exc:
        raise fail(f"{pem_file}: {exc}") from None
    finally:
        engine.dispose()
    if imported.warning:
        err.print(f"[yellow]warning:[/yellow] {imported.warning}", highlight=False, soft_wrap=True)
    key = imported.published
    status = "created" if imported.created else "unchanged"
    if as_json:
        print(json.dumps({"domain": domain, "status": status, "dkim": [key.to_json()]}))
        return
    if imported.created:
        print(f"Imported {key.dns_name} ({key.algorithm}); publish this DNS TXT record:")
    else:
        print(f"{key.dns_name} already holds this key (unchanged); its DNS TXT record:")
    print(f'  {key.dns_name}  TXT  "{key.txt}"')


@outbox_app.command("list")
def outbox_list(
    data_dir: DataDir, limit: Annotated[int, typer.Option(min=1, max=10000)] = 50, as_json: AsJson = False
) -> None:
    """Mail kept in the sandbox outbox, newest first."""
    settings = _settings(data_dir)
    engine = create_storage_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            items = list_outbox(conn, limit=limit, vault=open_vault(settings, engine))
    finally:
        engine.dispose()
    if as_json:
        for item in items:
            print(
                json.dumps(
                    {
                        "id": item.id,
                        "message_id": item.message_id,
                        "rcpt_to": item.rcpt_to,
                        "mail_from": item.mail_from,
                        "created_at": item.created_at,
                    }
                )
            )
        return
    table = Table("id", "MessageID", "to", "return path", "kept at")
    for item in items:
        table.add_row(
            str(item.id),
            str(item.message_id),
            item.rcpt_to,
            item.mail_from,
            datetime.fromtimestamp(item.created_at, UTC).isoformat(timespec="seconds"),
        )
    Console().print(table)


@outbox_app.command("show")
def outbox_show(data_dir: DataDir, message_id: Annotated[int, typer.Argument(help="The MessageID.")]) -> None:
    """Print the raw message (as it would have been sent) for a MessageID."""
    settings = _settings(data_dir)
    engine = create_storage_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            items = list_outbox(
                conn, message_id=message_id, limit=1, with_data=True, vault=open_vault(settings, engine)
            )
    finally:
        engine.dispose()
    if not items or items[0].data is None:
        raise fail(f"no message {message_id} in the sandbox outbox", code=1)
    sys.stdout.buffer.write(items[0].data)


def main() -> None:
    # Databases, keys and the outbox hold personal data and secrets: nothing we create is world-readable.
    os.umask(0o077)
    app()
