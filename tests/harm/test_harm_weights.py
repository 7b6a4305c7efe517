"""Harm weights: the file format, its errors, and how a crime is weighed."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.harm.test_harm_import import real_month
from tracker.harm.weights import DEFAULT_WEIGHTS_FILE, WeightsError, load_weights, parse_weights


def test_a_crime_is_weighed_by_its_offence_code_else_its_type_else_zero():
    weights = parse_weights("name: test\nweights:\n  Robbery: 365\n  8N: 180\n  Drugs: 0\n")
    assert weights.name == "test"
    days = weights.weigh(
        ["Robbery", "Violence and sexual offences", "Drugs", "Unknown type", "Robbery"],
        [None, "8N", None, None, "999"],
    )
    assert days.tolist() == [365.0, 180.0, 0.0, 0.0, 365.0]
    listed = weights.is_listed(["Robbery", "Unknown type", "Unknown type"], [None, None, "8N"])
    assert listed.tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("weights:\n  Robbery: 1\n", "missing name"),
        ("name: x\n", "missing weights"),
        ("name: x\nweights: {}\n", "line 2: weights: expected a mapping"),
        ("name: x\nweights:\n  Robbery: -1\n", "line 3: weights.Robbery: expected days"),
        ("name: x\nweights:\n  Robbery: '5'\n", "line 3: weights.Robbery: expected days"),
        ("name: x\nweights:\n  Robbery: .nan\n", "line 3: weights.Robbery: expected days"),
        ("name: x\nweights:\n  Robbery: true\n", "line 3: weights.Robbery: expected days"),
        (
            "name: x\nweights:\n  Robbery: 1\n  Robbery: 2\n",
            "line 4: weights.Robbery: repeated \\(first on line 3\\)",
        ),
        ("name: x\nweight:\n  Robbery: 1\n", "line 2: weight: unknown key"),
        ("- a list\n", "expected a mapping"),
        ("name: [x\n", "not valid YAML"),
    ],
)
def test_a_bad_weights_file_names_its_line_and_problem(text, message):
    with pytest.raises(WeightsError, match=message):
        parse_weights(text, source="w.yaml")


def test_the_shipped_file_weighs_every_type_of_the_real_month_and_says_it_is_approximate():
    weights = load_weights()
    assert DEFAULT_WEIGHTS_FILE.name == "harm_weights_police_uk.yaml"
    assert "approximate" in weights.name
    types = pd.read_csv(real_month(), dtype=str)["Crime type"].unique()
    assert all(weights.is_listed(types))
    # The Cambridge index leaves out what proactive policing finds, and harm orders as it
    # should: robbery over violence (a mix) over burglary over a theft.
    assert weights.weights["Drugs"] == weights.weights["Possession of weapons"] == 0
    assert weights.weights["Anti-social behaviour"] == 0
    w = weights.weights
    assert w["Robbery"] > w["Violence and sexual offences"] > w["Burglary"] > w["Shoplifting"] > 0
