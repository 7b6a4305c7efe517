"""Database errors name the statement, never its parameters: the ingester logs errors (a
locked database, say), and the parameters are officers' devices and positions (issue 15,
item 12)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from tracker.foundation.database import make_engine
from tracker.foundation.models import PingRow


def test_an_error_does_not_quote_the_positions_it_was_given(database_url):
    engine = make_engine(database_url)
    row = {
        "device_id": "radio-7",
        "t_us": 1,
        "lat": 52.6361234,
        "lon": -1.1398765,
        "source": "mqtt",
    }
    with engine.begin() as connection:
        connection.execute(insert(PingRow), [row])
    with pytest.raises(IntegrityError) as caught, engine.begin() as connection:
        connection.execute(insert(PingRow), [row])  # the same (device, time) again
    engine.dispose()
    message = str(caught.value)
    assert "pings" in message  # the statement is still named
    assert "hidden due to hide_parameters" in message
    # No position; PostgreSQL's own detail may name the duplicate key (device, time).
    assert "52.6361234" not in message and "-1.1398765" not in message
