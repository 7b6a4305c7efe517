"""`tracker broker config`: the production broker's configuration, credentials and ACLs."""

from __future__ import annotations

from pathlib import Path

import click

from tracker.cli.options import db_option, open_database
from tracker.dosage.broker_config import (
    ACL_FILE,
    CONFIG_FILE,
    CREDENTIALS_FILE,
    DEFAULT_DATA_DIR,
    PASSWD_FILE,
    BrokerConfigError,
    ListenerOptions,
    write_broker_config,
)


@click.group()
def broker() -> None:
    """The production MQTT broker (Mosquitto 2)."""


@broker.command("config")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for mosquitto.conf, passwd, acl and credentials.csv (created if missing).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Listener port (default 1883, or 8883 with TLS).",
)
@click.option("--listen-address", default="", help="Address to listen on (default: every one).")
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Server certificate (PEM) for TLS; needs --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The certificate's private key (PEM).",
)
@click.option(
    "--data-dir",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Where Mosquitto keeps its persistence file.",
)
@click.option(
    "--rotate",
    multiple=True,
    metavar="DEVICE",
    help="Give a device (or the ingester, tracker-ingester) a new password; repeatable.",
)
@db_option
def broker_config(
    out_dir, port, listen_address, tls_cert, tls_key, data_dir, rotate, db_url
) -> None:
    """Write a Mosquitto 2 configuration from the devices table: each device its own
    password and only its own topic, the ingester every topic, nobody anonymous.

    Existing passwords are kept unless rotated; devices no longer in the table lose access.
    The passwords are written to credentials.csv (mode 600) and nowhere else.
    """
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    factory = open_database(db_url)
    listener = ListenerOptions(port, listen_address, tls_cert, tls_key, data_dir)
    try:
        with factory() as session:
            outcome = write_broker_config(session, out_dir, listener, rotate)
    except (BrokerConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    for device_id, why in outcome.skipped:
        click.echo(f"warning: no credentials for device {device_id!r}: it {why}", err=True)
    folder = out_dir.resolve()
    click.echo(
        f"wrote {', '.join(str(folder / n) for n in (CONFIG_FILE, PASSWD_FILE, ACL_FILE))} "
        f"and {folder / CREDENTIALS_FILE} (mode 600, the only copy of the passwords)"
    )
    click.echo(
        f"{len(outcome.devices)} device users and the ingester: {len(outcome.new)} new, "
        f"{len(outcome.rotated)} rotated, {len(outcome.removed)} removed"
        + (f" ({', '.join(outcome.removed)})" if outcome.removed else "")
    )
    click.echo("apply: reload Mosquitto (systemctl reload mosquitto, or SIGHUP)")
