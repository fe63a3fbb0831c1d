"""Operator commands: ``python -m bridge.cli <command>``.

Settings come from the environment like every other process; a bad setting
prints its one-line ``ConfigError`` and exits with status 2 instead of a
traceback. ``cli`` is the click group other modules add commands to.
"""

from __future__ import annotations

import sys

import click

from bridge.config import ConfigError


def _runtime():
    """The process runtime, or exit 2 with the configuration error."""
    from bridge.runtime import get_runtime

    try:
        return get_runtime()
    except ConfigError as err:
        click.echo(f"configuration error: {err}", err=True)
        sys.exit(2)


def _load_connection(session, connection_id: int):
    from bridge.models import Connection

    connection = session.get(Connection, connection_id)
    if connection is None:
        raise click.ClickException(f"no connection with id {connection_id}")
    return connection


@click.group()
def cli() -> None:
    """ActiveCampaign Bridge administration."""


@cli.command("new-key")
def new_key() -> None:
    """Print a fresh BRIDGE_SECRET_KEY (keep it: stored API keys are encrypted with it)."""
    from bridge.crypto import new_secret_key

    click.echo(new_secret_key())


@cli.command("db-upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest version."""
    runtime = _runtime()
    runtime.db.upgrade()
    click.echo("database is up to date")


@cli.command("create-connection")
@click.option("--dataverse-url", required=True, help="https://<org>.crm.dynamics.com")
@click.option("--org-id", required=True, help="Dataverse organization id (GUID)")
@click.option("--tenant-id", required=True, help="Entra tenant id (GUID)")
@click.option("--ac-api-url", default=None, help="ActiveCampaign API URL (Settings → Developer)")
@click.option("--ac-api-key", default=None, envvar="AC_API_KEY",
              help="ActiveCampaign API key (or AC_API_KEY in the environment)")
@click.option("--name", default="", help="A label for people")
def create_connection_command(
    dataverse_url: str,
    org_id: str,
    tenant_id: str,
    ac_api_url: str | None,
    ac_api_key: str | None,
    name: str,
) -> None:
    """Create a connection for one Dynamics organization and print its id."""
    from bridge.connections import create_connection

    if bool(ac_api_url) != bool(ac_api_key):
        raise click.UsageError("--ac-api-url and --ac-api-key must be given together")
    runtime = _runtime()
    with runtime.db.session() as session:
        connection = create_connection(
            session,
            runtime.secrets,
            dataverse_url=dataverse_url,
            dataverse_org_id=org_id,
            tenant_id=tenant_id,
            ac_api_url=ac_api_url,
            ac_api_key=ac_api_key,
            name=name,
        )
        connection_id = connection.id
    click.echo(connection_id)


@cli.command("register-webhooks")
@click.option("--connection", "connection_id", type=int, required=True)
def register_webhooks_command(connection_id: int) -> None:
    """Register (or refresh) the Dataverse webhook with a new key; only its hash is stored.

    The key is committed only after Dataverse accepted it, so a failed
    registration leaves the previous key working.
    """
    from bridge.clients import DataverseError, dataverse_client
    from bridge.connections import rotate_dataverse_webhook_key
    from bridge.mapping import webhook_columns
    from bridge.registration import register_webhooks

    runtime = _runtime()
    webhook_url = runtime.settings.public_url + "/webhooks/dataverse"
    with runtime.db.session() as session:
        connection = _load_connection(session, connection_id)
        key = rotate_dataverse_webhook_key(connection)
        try:
            result = register_webhooks(
                dataverse_client(runtime, connection),
                webhook_url=webhook_url,
                webhook_key=key,
                columns_by_entity=webhook_columns(),
            )
        except DataverseError as err:  # the session rolls back: the old key stays valid
            raise click.ClickException(
                f"Dataverse refused the registration: {err.message}"
            ) from None
        except LookupError as err:
            raise click.ClickException(str(err)) from None
    click.echo(
        f"webhook {'registered' if result.endpoint_created else 'updated'} for {webhook_url}: "
        f"{result.steps_created} steps created, {result.steps_updated} updated"
    )


@cli.command("unregister-webhooks")
@click.option("--connection", "connection_id", type=int, required=True)
def unregister_webhooks_command(connection_id: int) -> None:
    """Remove the bridge's webhook endpoint and steps from the organization."""
    from bridge.clients import DataverseError, dataverse_client
    from bridge.registration import unregister_webhooks

    runtime = _runtime()
    with runtime.db.session() as session:
        connection = _load_connection(session, connection_id)
        session.expunge(connection)
    try:
        deleted = unregister_webhooks(dataverse_client(runtime, connection))
    except DataverseError as err:
        raise click.ClickException(f"Dataverse refused the request: {err.message}") from None
    with runtime.db.session() as session:
        _load_connection(session, connection_id).dataverse_webhook_key_hash = None
    click.echo(f"removed {deleted} registration rows")


if __name__ == "__main__":
    cli()
