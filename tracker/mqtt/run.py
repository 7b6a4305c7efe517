"""`ingest_mqtt.py`: the ingester's command line, on settings with flag overrides."""

from __future__ import annotations

import logging
import sys

import click

from tracker.foundation import settings
from tracker.mqtt.ingester import (
    LOG_FORMAT,
    BrokerAddress,
    IngestConfig,
    Ingester,
    WriterError,
    install_signal_handlers,
)
from tracker.mqtt.shards import Shard

EMBEDDED_PORT = 1884

# Declared here rather than shared with `tracker.cli`: this process is kept small and
# imports no other edge.
db_option = click.option(
    "--db",
    "db_url",
    default=None,
    metavar="URL",
    help="SQLAlchemy database URL (default: TRACKER_DATABASE_URL, then embedded SQLite).",
)


def build_config(
    mqtt_url: str,
    client_id: str | None,
    topics: tuple[str, ...],
    shared_group: str | None,
    ca_file: str | None,
    protocol: str,
    db_url: str | None,
    metrics_port: int | None = None,
    metrics_address: str | None = None,
    shard: int | None = None,
    shards: int | None = None,
    drop_other_shards: bool = False,
) -> IngestConfig:
    """Return the ingester configuration: flags first, then TRACKER_ settings."""
    try:
        config = IngestConfig(
            broker=BrokerAddress.parse(mqtt_url),
            client_id=client_id or settings.get("TRACKER_MQTT_CLIENT_ID"),
            topics=topics or settings.get("TRACKER_MQTT_TOPICS"),
            protocol=protocol,
            shared_group=(
                shared_group
                if shared_group is not None
                else settings.get("TRACKER_MQTT_SHARED_GROUP")
            ),
            shard=sharding(
                shard, shards if shards is not None else settings.get("TRACKER_MQTT_SHARDS")
            ),
            drop_other_shards=drop_other_shards,
            ca_file=ca_file or settings.get("TRACKER_MQTT_CA_FILE"),
            session_expiry_s=settings.get("TRACKER_MQTT_SESSION_EXPIRY_S"),
            batch_size=settings.get("TRACKER_INGEST_BATCH"),
            flush_s=settings.get("TRACKER_INGEST_FLUSH_S"),
            log_every_s=settings.get("TRACKER_INGEST_LOG_S"),
            recompute_every_s=settings.get("TRACKER_RECOMPUTE_S"),
            db_url=db_url,
            metrics_port=(
                metrics_port
                if metrics_port is not None
                else settings.get("TRACKER_INGEST_METRICS_PORT")
            ),
            metrics_address=metrics_address or settings.get("TRACKER_INGEST_METRICS_ADDRESS"),
        )
        config.subscriptions()  # validates the shared group against the protocol and shard
        if drop_other_shards and config.shard is None:
            raise ValueError("--drop-other-shards needs --shard")
    except (ValueError, settings.SettingsError) as exc:
        raise click.UsageError(str(exc)) from exc
    return config


def sharding(shard: int | None, shards: int) -> Shard | None:
    """Return this ingester's shard: --shard K of N (TRACKER_MQTT_SHARDS), or None when N is 0."""
    if not shards:
        if shard is not None:
            raise ValueError(
                "--shard needs the number of shards: --shards N or TRACKER_MQTT_SHARDS"
            )
        return None
    if shard is None:
        raise ValueError(
            f"sharded ({shards} shards: --shards or TRACKER_MQTT_SHARDS): give this "
            f"ingester's --shard, 1 to {shards}"
        )
    return Shard(shard, shards)


@click.command()
@click.option(
    "--mqtt-url",
    default=None,
    help="mqtt://[user:pass@]host:port or mqtts://...; default TRACKER_MQTT_URL; "
    "none starts the embedded broker (development only).",
)
@db_option
@click.option("--client-id", default=None, help="Stable client id (TRACKER_MQTT_CLIENT_ID).")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    help="Topic filter; repeat for several (TRACKER_MQTT_TOPICS).",
)
@click.option(
    "--shared-group",
    default=None,
    help="Share the subscription with other ingesters (MQTT v5 brokers).",
)
@click.option(
    "--shard",
    type=click.IntRange(1),
    default=None,
    metavar="K",
    help="Subscribe by name to the topics of shard K of the devices table's devices "
    "(1 to --shards).",
)
@click.option(
    "--shards",
    type=click.IntRange(0),
    default=None,
    metavar="N",
    help="Number of shards, one ingester each (TRACKER_MQTT_SHARDS; 0: not sharded).",
)
@click.option(
    "--drop-other-shards",
    is_flag=True,
    help="Also unsubscribe from other shards' devices' topics: once after changing --shards, "
    "when every shard's ingester has subscribed (docs/operations.md).",
)
@click.option("--ca-file", default=None, help="CA certificate for mqtts:// (TRACKER_MQTT_CA_FILE).")
@click.option(
    "--protocol",
    type=click.Choice(["5", "3.1.1"]),
    default=None,
    help="MQTT version (default 5; 3.1.1 with the embedded broker).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /metrics, /healthz and /readyz on this port (TRACKER_INGEST_METRICS_PORT; "
    "0: none).",
)
@click.option(
    "--metrics-address",
    default=None,
    help="Address of the metrics server (TRACKER_INGEST_METRICS_ADDRESS, 127.0.0.1).",
)
def main(
    mqtt_url,
    db_url,
    client_id,
    topics,
    shared_group,
    shard,
    shards,
    drop_other_shards,
    ca_file,
    protocol,
    metrics_port,
    metrics_address,
) -> None:
    """Ingest officers' positions from MQTT into the database and keep dosage current."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    mqtt_url = mqtt_url or settings.get("TRACKER_MQTT_URL")
    broker = None
    if not mqtt_url:
        if settings.is_production():
            raise click.UsageError("TRACKER_MQTT_URL is required in production")
        # Imported only here: the embedded broker's libraries would otherwise sit in the
        # receiving process, which is kept small (tracker.mqtt.ingester).
        from tracker.mqtt.broker import EMBEDDED_BROKER_MQTT_VERSIONS, EmbeddedBroker

        broker = EmbeddedBroker(port=EMBEDDED_PORT).start()
        mqtt_url = broker.url
        protocol = protocol or EMBEDDED_BROKER_MQTT_VERSIONS[-1]
        logging.getLogger("tracker.ingest").warning(
            "no broker configured: started the embedded broker at %s (MQTT %s only, no "
            "shared subscriptions, no redelivery of unacknowledged messages; for "
            "development only)",
            mqtt_url,
            "/".join(EMBEDDED_BROKER_MQTT_VERSIONS),
        )
    config = build_config(
        mqtt_url,
        client_id,
        topics,
        shared_group,
        ca_file,
        protocol or "5",
        db_url,
        metrics_port,
        metrics_address,
        shard,
        shards,
        drop_other_shards,
    )
    ingester = Ingester(config)
    install_signal_handlers(ingester)
    try:
        code = ingester.run()
    except WriterError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if broker is not None:
            broker.stop()
    sys.exit(code)
