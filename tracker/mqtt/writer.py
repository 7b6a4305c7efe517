"""The ingester's writer process: commits batches, then says so, and keeps dosage current.

The receiving process (`tracker.mqtt.ingester`) holds the MQTT connection and sends each
batch here as a list of (topic, payload), or for a message over a limit, which can only be a
dead letter, of what the dead letter keeps (`tracker.mqtt.ingester.cut_short`: the first
characters and bytes, and the sizes); this process decodes and stores it in one
transaction and only then answers, and the receiver acknowledges the batch's messages when
the answer arrives. Two processes rather than two threads: paho's decoding of incoming
packets and this process's decoding, storing and dosage passes each need most of a core,
and under one GIL they could only take turns.

Replies, one per batch and in batch order: ("stored", counts) once committed (`reply_counts`:
the outcome, dead letters by class of reason and the commit's seconds), or ("not stored",)
when the receiver stopped while the database was unavailable. Before the first batch:
("ready",) or ("error", message); after the final `None`: ("finished",). Between them, for
the receiver's metrics and readiness (tracker.mqtt.metrics): ("figures", samples) from the
database every FIGURES_EVERY_S, and ("database", reachable) when reaching it fails or
works again; for a sharded receiver, ("devices", ids): every device id of the devices
table, when serving starts and whenever they change (read every DEVICES_EVERY_S).
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections import Counter
from dataclasses import replace
from multiprocessing.connection import Connection

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tracker.dosage.devices import device_ids
from tracker.dosage.engine import DosageParams, configured_params
from tracker.dosage.ingest import (
    SOURCE,
    BatchOutcome,
    Message,
    dead_letter_payload,
    store_messages,
)
from tracker.dosage.monitoring import ingest_figures
from tracker.dosage.partitions import ensure_partitions
from tracker.dosage.payloads import Limits, configured_limits
from tracker.dosage.recompute import rebuild_device_days, rebuild_hot_spot_days
from tracker.dosage.store import (
    hot_spot_fingerprint,
    purge_pings,
    store_dead_letters,
    stored_hot_spots,
)
from tracker.foundation import settings
from tracker.foundation.database import DatabaseNotReady, open_database
from tracker.mqtt.ingester import LOG_FORMAT, quiet_collector

log = logging.getLogger("tracker.ingest")

PURGE_EVERY_S = 3600
RECOMPUTE_SHARE = 0.25  # the most of this process's time that dosage passes may take
RECOMPUTE_MAX_DEFER = 15  # while backlogged, a pass at least every this many intervals
FIGURES_EVERY_S = 10.0  # queue depths and ping ages for the metrics: three small queries
# A sharded receiver's device list: how soon a device added to the table is subscribed to.
DEVICES_EVERY_S = 10.0
# Errors in the data, not in reaching the database: retrying the same batch cannot help.
DATA_ERRORS = (DataError, IntegrityError)


def main(batches_fd: int, replies_fd: int, stop_fd: int) -> None:
    """The writer process: open the database, then commit batches until told to end.

    The first message on `batches` gives db_url, recompute_every_s, log_level,
    max_payload_bytes (the limit the receiver applies) and devices (whether to send the
    device ids); `stop` becomes readable when the receiver asks to stop, or dies.
    """
    # Ctrl-C reaches the whole process group; the receiver decides when this process ends,
    # after it has sent the batches it still holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    batches = Connection(batches_fd, writable=False)
    replies = Connection(replies_fd, readable=False)
    stop = Connection(stop_fd, writable=False)
    try:
        options = batches.recv()
    except EOFError:
        return
    logging.basicConfig(level=options["log_level"], format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        factory = open_database(options["db_url"])
        # The receiver's payload limit, read from the same setting, so that the two agree.
        limits = replace(configured_limits(), max_payload_bytes=options["max_payload_bytes"])
        writer = Writer(
            factory,
            configured_params(),
            limits,
            options["recompute_every_s"],
            stop,
            send_devices=options.get("devices", False),
        )
    except DatabaseNotReady as exc:
        replies.send(("error", str(exc)))
        return
    except (settings.SettingsError, SQLAlchemyError) as exc:
        replies.send(("error", f"cannot start the writer: {exc}"))
        return
    replies.send(("ready",))
    try:
        with quiet_collector():
            writer.serve(batches, replies)
    except (BrokenPipeError, EOFError):
        pass  # the receiver is gone (killed): nothing more can be acknowledged
    finally:
        factory.kw["bind"].dispose()


class Writer:
    """Commit batches in order and run bounded dosage passes between them."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        params: DosageParams,
        limits: Limits,
        recompute_every_s: float,
        stop: Connection,
        send_devices: bool = False,
    ) -> None:
        self.factory = factory
        self.params = params
        self.limits = limits
        self.recompute_every_s = recompute_every_s
        self.stop = stop
        self._next_purge = 0.0
        self._hot_spots = self._load_hot_spots()  # (fingerprint, set), refreshed by _recompute
        self.last_commit_s = 0.0  # how long the last batch stored took to commit
        self._replies: Connection | None = None  # set by serve
        self._database_reachable = True
        self._next_figures = 0.0
        self.send_devices = send_devices  # a sharded receiver wants the device ids
        self._devices_sent: list[str] | None = None
        self._next_devices = 0.0

    def serve(self, batches: Connection, replies: Connection) -> None:
        self._replies = replies
        if self.send_devices:
            try:
                self._report_devices()
            except SQLAlchemyError as exc:  # sent by a later pass
                log.error("cannot read the devices table, will retry: %s", exc)
        next_recompute = time.monotonic() + self.recompute_every_s
        last_recompute = time.monotonic()
        while True:
            if batches.poll(max(0.0, next_recompute - time.monotonic())):
                batch = batches.recv()
                if batch is None:
                    break
                outcome = self._commit(batch)
                replies.send(
                    ("not stored",)
                    if outcome is None
                    else ("stored", reply_counts(outcome, self.last_commit_s))
                )
            now = time.monotonic()
            # While a batch is already waiting, ingest is behind the broker: the pass
            # waits (at most RECOMPUTE_MAX_DEFER intervals), so that a burst is acknowledged
            # as fast as it can be committed and the broker's queue stays short; the queued
            # device-days are rebuilt once the burst is over.
            if now >= next_recompute and (
                now >= last_recompute + self.recompute_every_s * RECOMPUTE_MAX_DEFER
                or not batches.poll()
            ):
                self._recompute()
                next_recompute = self._next_recompute(now)
                last_recompute = time.monotonic()
        self._recompute()
        replies.send(("finished",))

    def _next_recompute(self, started: float) -> float:
        """When the next dosage pass may start, given when the last one started.

        The interval counts from the end of a pass, and a pass may take at most
        RECOMPUTE_SHARE of this process's time: a pass slower than the interval (many
        queued device-days during a burst) would otherwise run after every batch and cut
        ingest to one batch per pass while unacknowledged messages pile up at the broker.
        """
        finished = time.monotonic()
        took = finished - started
        return finished + max(
            self.recompute_every_s, took * (1 - RECOMPUTE_SHARE) / RECOMPUTE_SHARE
        )

    def _commit(self, batch: list[tuple]) -> BatchOutcome | None:
        """Store the batch; retry on database errors until stopped."""
        messages = [_message(record) for record in batch]
        delay_s = 0.5
        while True:
            try:
                started = time.perf_counter()
                outcome = self._store(messages)
                self.last_commit_s = time.perf_counter() - started
                self._database(reachable=True)
                return outcome
            except SQLAlchemyError as exc:
                self._database(reachable=False)
                # Not acknowledged: the broker keeps the messages until a commit succeeds.
                log.error(
                    "database error, batch of %d not acknowledged, retrying in %.1f s: %s",
                    len(batch),
                    delay_s,
                    exc,
                )
                if self.stop.poll(delay_s):  # stopping, or the receiver has gone
                    return None
                delay_s = min(delay_s * 2, 30)

    def _store(self, messages: list[Message]) -> BatchOutcome:
        """Store messages in one transaction, or one by one if that fails other than by an outage.

        Such a failure means a message the code cannot handle (a bug: every bad input known
        becomes a dead letter in `decode_message`) or data the database refuses (DATA_ERRORS).
        Left alone it would fail the batch again on every redelivery and stop ingest for
        good; instead each message that still fails on its own becomes a dead letter, and
        the messages around it are stored.
        """
        try:
            return self._store_together(messages)
        except DATA_ERRORS:
            log.exception(
                "the database refused the data of a batch of %d messages; storing them one by one",
                len(messages),
            )
        except SQLAlchemyError:
            raise
        except Exception:
            log.exception(
                "a batch of %d messages failed with an unexpected error; storing them one by one",
                len(messages),
            )
        total = BatchOutcome()
        for message in messages:
            try:
                outcome = self._store_together([message])
            except DATA_ERRORS as exc:
                outcome = self._dead_letter(message, exc)
            except SQLAlchemyError:
                raise  # the database is unavailable: the caller retries the batch
            except Exception as exc:
                outcome = self._dead_letter(message, exc)
            total += outcome
        return total

    def _dead_letter(self, message: Message, exc: Exception) -> BatchOutcome:
        """Store a message that cannot be stored as a dead letter naming the error."""
        log.exception("message on %s could not be processed", message.topic, exc_info=exc)
        reason = f"could not be processed ({type(exc).__name__}: {exc})"
        with self.factory.begin() as session:
            store_dead_letters(
                session, SOURCE, [(message.topic, reason, dead_letter_payload(message))]
            )
        return BatchOutcome(messages=1, dead_letters=1, reasons=Counter(unprocessable=1))

    def _store_together(self, messages: list[Message]) -> BatchOutcome:
        with self.factory.begin() as session:
            return store_messages(
                session, messages, self.params, self.limits, time.time_ns() // 1000
            )

    def _load_hot_spots(self, cached: tuple | None = None) -> tuple:
        """Return (fingerprint, hot spot set), reloading only when the stored set changed."""
        with self.factory() as session:
            fingerprint = hot_spot_fingerprint(session)
            if cached is not None and cached[0] == fingerprint:
                return cached
            return fingerprint, stored_hot_spots(session)

    def _recompute(self) -> None:
        """One bounded pass over pending dosage, so ingest never stalls behind a rebuild."""
        try:
            self._hot_spots = self._load_hot_spots(self._hot_spots)
            with self.factory.begin() as session:
                rebuild_device_days(session, self._hot_spots[1], self.params, limit=200)
            with self.factory.begin() as session:
                rebuild_hot_spot_days(session, self.params, limit=200)
            retention_days = self.limits.max_age_days
            if time.monotonic() >= self._next_purge:
                # Hourly, from the first pass on: the coming months' partitions (PostgreSQL),
                # then the retention purge.
                with self.factory.begin() as session:
                    made = ensure_partitions(session)
                if made:
                    log.info("made partitions of pings: %s", ", ".join(made))
                if retention_days:
                    with self.factory.begin() as session:
                        purged = purge_pings(session, retention_days, self.params)
                    log.info("purged %d pings older than %d days", purged, retention_days)
                self._next_purge = time.monotonic() + PURGE_EVERY_S
            if time.monotonic() >= self._next_figures:
                with self.factory() as session:
                    samples = ingest_figures(session).samples()
                self._send(("figures", samples))
                self._next_figures = time.monotonic() + FIGURES_EVERY_S
            if self.send_devices and time.monotonic() >= self._next_devices:
                self._report_devices()
            self._database(reachable=True)
        except SQLAlchemyError as exc:
            log.error("dosage recompute failed, will retry: %s", exc)
            self._database(reachable=False)

    def _report_devices(self) -> None:
        """Send the device ids when they differ from those last sent."""
        with self.factory() as session:
            ids = device_ids(session)
        if ids != self._devices_sent:
            self._send(("devices", ids))
            self._devices_sent = ids
        self._next_devices = time.monotonic() + DEVICES_EVERY_S

    def _database(self, reachable: bool) -> None:
        """Tell the receiver when the database stops or starts answering (its readiness)."""
        if reachable != self._database_reachable:
            self._database_reachable = reachable
            self._send(("database", reachable))

    def _send(self, report: tuple) -> None:
        if self._replies is not None:  # not when driven without a receiver (tests)
            self._replies.send(report)


def reply_counts(outcome: BatchOutcome, commit_s: float) -> dict:
    """The counts of a stored batch as the receiver reads them (plain types, picklable)."""
    return {
        "messages": outcome.messages,
        "pings": outcome.pings,
        "dead_letters": outcome.dead_letters,
        "ignored": outcome.ignored,
        "reasons": dict(outcome.reasons),
        "commit_s": commit_s,
    }


def _message(record: tuple) -> Message:
    """A message as the receiver sent it: (topic, payload), or cut short (over a limit)."""
    if len(record) == 2:
        return Message(*record)
    topic, first_bytes, payload_size, topic_length = record
    return Message(topic, first_bytes, payload_size=payload_size, topic_length=topic_length)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
