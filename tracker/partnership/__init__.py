"""The partnership (docs/partners.md): a problem-solving plan per hot spot (SARA), the
aggregate figures partners see with small numbers suppressed, and the monthly board report.
Core: no edge imports."""
