"""Behind a reverse proxy (TRACKER_PROXY_HOPS): the client's address and scheme come from the
proxy's headers, and without the setting a forged header changes nothing."""

import pytest
from flask import request

from tests.web import test_web
from tests.web.test_web import csrf_token, make_app
from web import ConfigurationError

# The web tests' demo database.
demo = test_web.demo


def attempts_from(app, addresses: list[str]) -> list[int]:
    """Fail to sign in as "assurance" once from each forwarded address; return the codes."""
    codes = []
    for address in addresses:
        client = app.test_client()
        response = client.post(
            "/login",
            data={"username": "assurance", "password": "wrong", "csrf_token": csrf_token(client)},
            headers={"X-Forwarded-For": address},
        )
        codes.append(response.status_code)
    return codes


def test_behind_a_proxy_each_client_address_has_its_own_log_in_limit(demo):
    app = make_app(demo, LOGIN_RATE_LIMIT="2 per minute", PROXY_HOPS=1)
    assert attempts_from(app, ["203.0.113.7"] * 3) == [401, 401, 429]
    # Another client, through the same proxy, is not locked out by the first one's tries.
    assert attempts_from(app, ["198.51.100.9"]) == [401]


def test_without_the_setting_forged_addresses_share_one_limit(demo):
    app = make_app(demo, LOGIN_RATE_LIMIT="2 per minute")
    assert attempts_from(app, ["203.0.113.7", "198.51.100.9", "192.0.2.1"]) == [401, 401, 429]


def test_the_address_and_scheme_are_those_the_proxy_passes_on(demo):
    app = make_app(demo, PROXY_HOPS=1)
    app.add_url_rule("/_seen", "seen", lambda: f"{request.remote_addr} {request.scheme}")
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    assert app.test_client().get("/_seen", headers=headers).text == "203.0.113.7 https"
    plain = make_app(demo)
    plain.add_url_rule("/_seen", "seen", lambda: f"{request.remote_addr} {request.scheme}")
    assert plain.test_client().get("/_seen", headers=headers).text == "127.0.0.1 http"


def test_a_negative_number_of_proxies_is_refused(demo):
    with pytest.raises(ConfigurationError, match="TRACKER_PROXY_HOPS"):
        make_app(demo, PROXY_HOPS=-1)
