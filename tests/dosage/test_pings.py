"""GPS pings: timestamps, validation of one ping, and reading CSV / JSON-lines ping files."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from tracker.dosage.pings import (
    BadRow,
    Ping,
    PingError,
    PingFileError,
    make_ping,
    parse_pings_text,
    parse_timestamp,
    read_pings,
)

# 2024-01-15T10:00:00Z: 2024-01-01 is 1_704_067_200 s; + 14 days (1_209_600 s) + 10 h (36_000 s).
T0_S = 1_705_312_800
T0_US = T0_S * 1_000_000

CSV_HEADER = "device_id,timestamp,lat,lon,accuracy_m,speed_kmh"


def jsonl(*records) -> str:
    """JSON lines text: dicts and lists are dumped, strings are written as they are."""
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


# --- parse_timestamp --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected_us",
    [
        ("2024-01-15T10:00:00Z", T0_US),
        ("2024-01-15T10:00:00+00:00", T0_US),
        ("2024-01-15T11:00:00+01:00", T0_US),  # 11:00 at UTC+1 is 10:00 UTC
        ("2024-01-15T05:00:00-05:00", T0_US),  # 05:00 at UTC-5 is 10:00 UTC
        ("2024-01-16T01:30:00+15:30", T0_US),  # unusual offsets work too
        ("2024-01-15T10:00:00.5Z", T0_US + 500_000),
        ("2024-01-15T10:00:00.123456Z", T0_US + 123_456),
        ("2024-01-15T10:00:00.000001+00:00", T0_US + 1),
        (T0_S, T0_US),
        (T0_S + 0.25, T0_US + 250_000),
        (1_705_312_800.123456, T0_US + 123_456),  # exact, not 1_705_312_800_123_455.99...
        (str(T0_S), T0_US),
        ("1705312800.000001", T0_US + 1),
        ("  1705312800.5 ", T0_US + 500_000),
        (0, 0),
        # Values where seconds * 1e6 in binary floating point would truncate to one less.
        ("0.000498", 498),
        (0.000498, 498),
        ("4102444799.081427", 4_102_444_799_081_427),  # the last second handled (2099)
    ],
)
def test_parse_timestamp_gives_exact_integer_microseconds(value, expected_us):
    result = parse_timestamp(value)

    assert result == expected_us
    assert type(result) is int


def test_the_same_instant_in_every_format_is_equal():
    forms = [
        "2024-01-15T10:00:00Z",
        "2024-01-15T10:00:00+00:00",
        "2024-01-15T10:00:00.000000Z",
        "2024-01-15T11:00:00+01:00",
        "2024-01-15T05:00:00-05:00",
        T0_S,
        float(T0_S),
        str(T0_S),
        f"{T0_S}.0",
    ]

    assert {parse_timestamp(form) for form in forms} == {T0_US}


@pytest.mark.parametrize("value", ["2024-01-15T10:00:00", "2024-01-15 10:00:00", "2024-01-15"])
def test_naive_iso_timestamps_are_rejected_as_ambiguous(value):
    with pytest.raises(PingError, match="ambiguous"):
        parse_timestamp(value)


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "",
        "2024-13-01T00:00:00Z",
        "2024-01-15T25:00:00Z",
        "10:00:00Z",
        "1.2.3",
        "nan",
        "inf",
        None,
        True,
        [T0_S],
        {"t": T0_S},
    ],
)
def test_garbage_timestamps_are_rejected(value):
    with pytest.raises(PingError, match="timestamp"):
        parse_timestamp(value)


@pytest.mark.parametrize(
    "value",
    [
        T0_S * 1000,
        str(T0_S * 1000),
        float(T0_S * 1000),
        -1,
        "-60",
        float("nan"),
        float("inf"),
    ],
)
def test_epoch_milliseconds_and_other_out_of_range_epochs_are_rejected(value):
    with pytest.raises(PingError, match="out of range"):
        parse_timestamp(value)


def test_epoch_milliseconds_message_says_seconds_are_expected():
    with pytest.raises(PingError, match="milliseconds"):
        parse_timestamp(T0_S * 1000)


# --- make_ping --------------------------------------------------------------------------------


def test_make_ping_returns_a_ping_with_utc_microseconds():
    ping = make_ping(" van-7 ", "2024-01-15T11:00:00+01:00", "52.605", -1.095, "8.5", 12)

    assert ping == Ping("van-7", T0_US, 52.605, -1.095, 8.5, 12.0)
    assert isinstance(ping.lat, float)
    assert isinstance(ping.accuracy_m, float)


def test_make_ping_optional_fields_may_be_absent_or_blank():
    assert make_ping("d1", T0_S, 52.6, -1.1) == Ping("d1", T0_US, 52.6, -1.1, None, None)
    assert make_ping("d1", T0_S, 52.6, -1.1, "", " ") == Ping("d1", T0_US, 52.6, -1.1, None, None)


def test_make_ping_accepts_edges_of_the_valid_range():
    # Range limits are inclusive, and a zero latitude with a non-zero longitude is a place.
    assert make_ping("d1", T0_S, 90, 180, 0).lat == 90
    assert make_ping("d1", T0_S, -90, -180).lon == -180
    assert make_ping("d1", T0_S, 0, -1.1).lat == 0
    assert make_ping(42, T0_S, 52.6, -1.1).device_id == "42"


@pytest.mark.parametrize(
    "fields, message",
    [
        pytest.param(dict(device_id=None), "missing device_id", id="device-none"),
        pytest.param(dict(device_id=""), "missing device_id", id="device-empty"),
        pytest.param(dict(device_id="   "), "missing device_id", id="device-blank"),
        pytest.param(dict(device_id="a\nb"), "control characters", id="device-newline"),
        pytest.param(dict(device_id="x" * 129), "too long", id="device-too-long"),
        pytest.param(dict(timestamp=None), "missing timestamp", id="timestamp-none"),
        pytest.param(dict(timestamp=""), "missing timestamp", id="timestamp-empty"),
        pytest.param(dict(timestamp="2024-01-15T10:00:00"), "ambiguous", id="timestamp-naive"),
        pytest.param(dict(lat="north"), "lat 'north' is not a number", id="lat-text"),
        pytest.param(dict(lat=None), "missing lat", id="lat-missing"),
        pytest.param(dict(lat=True), "lat True is not a number", id="lat-bool"),
        pytest.param(dict(lon=""), "missing lon", id="lon-blank"),
        pytest.param(dict(lat=91), r"lat 91\.0 is out of range", id="lat-91"),
        pytest.param(dict(lat=-90.0001), "lat -90.0001 is out of range", id="lat-minus-90.0001"),
        pytest.param(dict(lon=-181), r"lon -181\.0 is out of range", id="lon-minus-181"),
        pytest.param(dict(lon=180.5), r"lon 180\.5 is out of range", id="lon-180.5"),
        pytest.param(dict(lat=0, lon=0), r"\(0, 0\)", id="null-island"),
        pytest.param(dict(lat="0.0", lon="-0"), r"\(0, 0\)", id="null-island-text"),
        pytest.param(dict(accuracy_m=-1), "accuracy_m -1.0 is negative", id="accuracy-negative"),
        pytest.param(
            dict(accuracy_m="wide"), "accuracy_m 'wide' is not a number", id="accuracy-text"
        ),
        pytest.param(dict(speed_kmh=-3), "speed_kmh -3.0 is negative", id="speed-negative"),
        pytest.param(dict(lat=math.nan), "lat nan is not a finite number", id="lat-nan"),
        pytest.param(dict(lon="NaN"), "lon 'NaN' is not a finite number", id="lon-nan-text"),
        pytest.param(dict(lat=math.inf), "lat inf is not a finite number", id="lat-inf"),
        pytest.param(
            dict(accuracy_m=math.nan), "accuracy_m nan is not a finite number", id="accuracy-nan"
        ),
    ],
)
def test_make_ping_rejects_bad_fields_naming_them(fields, message):
    good = dict(device_id="d1", timestamp=T0_S, lat=52.605, lon=-1.095)

    with pytest.raises(PingError, match=message):
        make_ping(**{**good, **fields})


# --- parse_pings_text: CSV --------------------------------------------------------------------


def test_csv_good_rows_are_kept_and_bad_rows_reported_with_line_numbers():
    text = (
        "\n".join(
            [
                CSV_HEADER,  # line 1
                "d1,2024-01-15T10:00:00Z,52.605,-1.095,5,",  # line 2: good
                "d1,2024-01-15T10:01:00Z,north,-1.095,5,",  # line 3: lat not a number
                "d1,2024-01-15T10:02:00Z,52.605,-1.095",  # line 4: 4 fields, not 6
                "",  # line 5: blank, ignored
                "d2,2024-01-15T10:03:00,52.605,-1.095,,",  # line 6: no UTC offset
                "d2,1705313040,52.605,-1.095,,4.5",  # line 7: good (10:04Z)
                ",2024-01-15T10:05:00Z,52.605,-1.095,,",  # line 8: no device
                "d3,2024-01-15T10:05:00Z,0,0,3,",  # line 9: (0, 0)
                "d3,2024-01-15T11:06:00+01:00,52.6,-1.1,12,",  # line 10: good (10:06Z)
            ]
        )
        + "\n"
    )

    frame, bad = parse_pings_text(text, source="pings.csv")

    assert list(frame.columns) == [
        "device_id",
        "timestamp",
        "lat",
        "lon",
        "accuracy_m",
        "speed_kmh",
    ]
    assert frame["device_id"].tolist() == ["d1", "d2", "d3"]
    assert frame["timestamp"].tolist() == [
        pd.Timestamp("2024-01-15T10:00:00Z"),
        pd.Timestamp("2024-01-15T10:04:00Z"),
        pd.Timestamp("2024-01-15T10:06:00Z"),
    ]
    assert frame["lat"].tolist() == [52.605, 52.605, 52.6]
    assert frame["lon"].tolist() == [-1.095, -1.095, -1.1]
    assert frame["accuracy_m"].tolist()[0] == 5.0
    assert math.isnan(frame["accuracy_m"].tolist()[1])
    assert math.isnan(frame["speed_kmh"].tolist()[0])
    assert frame["speed_kmh"].tolist()[1] == 4.5

    assert [row.line for row in bad] == [3, 4, 6, 8, 9]
    reasons = {row.line: row.reason for row in bad}
    assert "lat 'north' is not a number" in reasons[3]
    assert reasons[4] == "expected 6 fields, found 4"
    assert "ambiguous" in reasons[6]
    assert "missing device_id" in reasons[8]
    assert "(0, 0)" in reasons[9]


def test_bad_row_prints_as_line_and_reason():
    assert str(BadRow(7, "lat 'x' is not a number")) == "line 7: lat 'x' is not a number"


def test_csv_optional_columns_may_be_absent_and_in_any_order():
    text = "lon,lat,timestamp,device_id\n-1.095,52.605,2024-01-15T10:00:00Z,d1\n"

    frame, bad = parse_pings_text(text)

    assert bad == []
    assert frame[["device_id", "lat", "lon"]].values.tolist() == [["d1", 52.605, -1.095]]
    assert frame["accuracy_m"].isna().all()


def test_csv_header_and_cells_may_have_spaces_and_crlf_line_ends():
    text = "device_id, timestamp, lat, lon\r\nd1, 2024-01-15T10:00:00Z, 52.605, -1.095\r\n"

    frame, bad = parse_pings_text(text)

    assert bad == []
    assert frame["timestamp"].tolist() == [pd.Timestamp("2024-01-15T10:00:00Z")]
    assert frame["lat"].tolist() == [52.605]


def test_csv_row_with_too_many_fields_is_reported():
    text = "device_id,timestamp,lat,lon\nd1,1705312800,52.6,-1.1,extra\nd1,1705312860,52.6,-1.1\n"

    frame, bad = parse_pings_text(text)

    assert len(frame) == 1
    assert bad == [BadRow(2, "expected 4 fields, found 5")]


def test_csv_line_numbers_count_lines_inside_quoted_fields():
    # A quoted device id spanning two physical lines: the next row is on line 4.
    text = 'device_id,timestamp,lat,lon\n"d\n1",1705312800,52.6,-1.1\nd2,never,52.6,-1.1\n'

    _, bad = parse_pings_text(text)

    assert [row.line for row in bad] == [3, 4]
    assert "control characters" in bad[0].reason


@pytest.mark.parametrize("text", ["", "   \n\n", "\n"], ids=["empty", "blank-lines", "newline"])
def test_empty_text_is_a_file_error(text):
    with pytest.raises(PingFileError, match=r"pings\.csv: the file is empty"):
        parse_pings_text(text, source="pings.csv")


@pytest.mark.parametrize(
    "header, missing",
    [
        ("device_id,time,lat,lon", ["timestamp"]),
        ("device,timestamp,latitude,longitude", ["device_id", "lat", "lon"]),
        ("Device_ID,Timestamp,Lat,Lon", ["device_id", "timestamp", "lat", "lon"]),
    ],
)
def test_csv_header_missing_columns_is_a_file_error(header, missing):
    text = f"{header}\nd1,1705312800,52.6,-1.1\n"

    with pytest.raises(PingFileError) as caught:
        parse_pings_text(text, source="pings.csv")

    message = str(caught.value)
    assert message.startswith("pings.csv: line 1:")
    assert f"lacks {', '.join(missing)}" in message


def test_csv_header_only_gives_no_pings_and_no_bad_rows():
    frame, bad = parse_pings_text("device_id,timestamp,lat,lon\n")

    assert frame.empty
    assert bad == []
    assert list(frame.columns)[:4] == ["device_id", "timestamp", "lat", "lon"]


# --- parse_pings_text: JSON lines -------------------------------------------------------------


def test_json_lines_good_rows_kept_and_bad_lines_reported():
    text = jsonl(
        {
            "device_id": "d1",
            "timestamp": "2024-01-15T10:00:00Z",
            "lat": 52.605,
            "lon": -1.095,
        },  # line 1: good
        [1, 2, 3],  # line 2: array
        {"device_id": "d1", "timestamp": T0_S + 60, "lat": 52.605},  # line 3: no lon
        "",  # line 4: blank
        '{"device_id": "d1", "timestamp": ',  # line 5: broken
        '"just a string"',  # line 6: string
        {
            "device_id": "d2",
            "timestamp": "2024-01-15T11:02:00+01:00",
            "lat": "52.605",
            "lon": "-1.095",
            "accuracy_m": 12,
            "heading": 90,
        },  # line 7: good
        "null",  # line 8: null
        {
            "device_id": "d2",
            "timestamp": "2024-01-15T10:03:00",
            "lat": 52.6,
            "lon": -1.1,
        },  # line 9: naive
        {
            "device_id": "d3",
            "timestamp": T0_S + 240.5,
            "lat": 52.6,
            "lon": -1.1,
            "speed_kmh": 30,
        },  # line 10: good
    )

    frame, bad = parse_pings_text(text, source="pings.jsonl")

    assert frame["device_id"].tolist() == ["d1", "d2", "d3"]
    assert frame["timestamp"].tolist() == [
        pd.Timestamp("2024-01-15T10:00:00Z"),
        pd.Timestamp("2024-01-15T10:02:00Z"),
        pd.Timestamp("2024-01-15T10:04:00.5Z"),
    ]
    assert frame["accuracy_m"].tolist()[1] == 12.0
    assert frame["speed_kmh"].tolist()[2] == 30.0

    assert [row.line for row in bad] == [2, 3, 5, 6, 8, 9]
    reasons = {row.line: row.reason for row in bad}
    assert reasons[2] == "expected a JSON object"
    assert reasons[3] == "missing lon"
    assert reasons[5].startswith("not valid JSON")
    assert reasons[6] == "expected a JSON object"
    assert reasons[8] == "expected a JSON object"
    assert "ambiguous" in reasons[9]


def test_json_lines_nested_too_deeply_is_a_bad_line_among_good_ones():
    text = jsonl(
        {"device_id": "d1", "timestamp": "2024-01-15T10:00:00Z", "lat": 52.605, "lon": -1.095},
        "[" * 50_000 + "]" * 50_000,
        {"device_id": "d1", "timestamp": "2024-01-15T10:01:00Z", "lat": 52.605, "lon": -1.095},
    )

    frame, bad = parse_pings_text(text, source="pings.jsonl")

    assert len(frame) == 2
    assert [(row.line, row.reason) for row in bad] == [
        (2, "not valid JSON (arrays or objects nested too deeply)")
    ]


def test_json_lines_and_csv_give_the_same_frame():
    rows = [
        ("d1", "2024-01-15T10:00:00Z", 52.605, -1.095, 5.0),
        ("d2", "1705312860", 52.6, -1.1, 7.5),
    ]
    csv_text = "device_id,timestamp,lat,lon,accuracy_m\n" + "".join(
        f"{d},{t},{lat},{lon},{acc}\n" for d, t, lat, lon, acc in rows
    )
    json_text = jsonl(
        *(
            {"device_id": d, "timestamp": t, "lat": lat, "lon": lon, "accuracy_m": acc}
            for d, t, lat, lon, acc in rows
        )
    )

    csv_frame, csv_bad = parse_pings_text(csv_text)
    json_frame, json_bad = parse_pings_text(json_text)

    assert csv_bad == json_bad == []
    pd.testing.assert_frame_equal(csv_frame, json_frame)
    assert len(csv_frame) == 2


def test_json_lines_split_only_at_newlines():
    # U+2028 (LINE SEPARATOR) is legal unescaped inside a JSON string.
    text = (
        '{"device_id": "unit\u2028A", "timestamp": 1705312800, "lat": 52.6, "lon": -1.1}\n'
        '{"device_id": "d2", "timestamp": "later", "lat": 52.6, "lon": -1.1}\n'
    )

    frame, bad = parse_pings_text(text)

    assert frame["device_id"].tolist() == ["unit\u2028A"]
    assert [row.line for row in bad] == [2]


@pytest.mark.parametrize("first_line", ["[1, 2]", "null", '"header"'])
def test_json_lines_starting_with_a_non_object_line_keep_their_good_rows(first_line):
    text = jsonl(first_line, {"device_id": "d1", "timestamp": T0_S, "lat": 52.6, "lon": -1.1})

    frame, bad = parse_pings_text(text)

    assert frame["device_id"].tolist() == ["d1"]
    assert bad == [BadRow(1, "expected a JSON object")]


# --- read_pings: files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, bad_line",
    [
        (
            "pings.csv",
            "device_id,timestamp,lat,lon\nd1,2024-01-15T10:00:00Z,52.605,-1.095\n"
            "d1,later,52.605,-1.095\n",
            3,
        ),
        (
            "pings.jsonl",
            jsonl(
                {
                    "device_id": "d1",
                    "timestamp": "2024-01-15T10:00:00Z",
                    "lat": 52.605,
                    "lon": -1.095,
                },
                "not json",
            ),
            2,
        ),
    ],
)
def test_a_byte_order_mark_at_the_start_of_the_file_is_fine(tmp_path, name, text, bad_line):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")

    frame, bad = read_pings(path)

    assert frame["device_id"].tolist() == ["d1"]
    assert frame["timestamp"].tolist() == [pd.Timestamp("2024-01-15T10:00:00Z")]
    assert [row.line for row in bad] == [bad_line]  # the BOM shifts nothing


def test_read_pings_missing_file_is_a_file_error(tmp_path):
    with pytest.raises(PingFileError, match="cannot read the file"):
        read_pings(tmp_path / "absent.csv")


def test_read_pings_empty_file_is_a_file_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")

    with pytest.raises(PingFileError, match="empty"):
        read_pings(path)


def test_read_pings_non_utf8_file_is_a_file_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        "device_id,timestamp,lat,lon\nP\xe9ter,1705312800,52.6,-1.1\n".encode("latin-1")
    )

    with pytest.raises(PingFileError, match=r"latin1\.csv: cannot read the file"):
        read_pings(path)
