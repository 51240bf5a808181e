"""NATS URLs with several servers and credentials, as the settings and every client read them."""

import pytest

from autopay_runtime.settings import ServiceSettings, nats_connect_options, url_with_credentials

ODD = "s3cret,with/odd:chars@%"


def test_one_server_without_credentials():
    assert nats_connect_options("nats://127.0.0.1:4222") == {"servers": ["nats://127.0.0.1:4222"]}


def test_a_cluster_gets_the_credentials_on_each_server_and_they_come_back_decoded():
    url = url_with_credentials("nats://a:1, nats://b:2,nats://[::1]:3", "gate way", ODD)
    assert url.count(",") == 2  # percent-encoded: no comma of the password's
    assert nats_connect_options(url) == {
        "servers": ["nats://a:1", "nats://b:2", "nats://[::1]:3"],
        "user": "gate way",
        "password": ODD,
    }


def test_credentials_already_in_the_url_are_kept():
    url = url_with_credentials("nats://me:pw@a:1", "other", "x")
    assert nats_connect_options(url) == {"servers": ["nats://a:1"], "user": "me", "password": "pw"}


def test_a_token():
    assert nats_connect_options("nats://t0ken@a:1") == {"servers": ["nats://a:1"], "token": "t0ken"}


def test_servers_with_different_credentials_are_refused():
    with pytest.raises(ValueError, match="different credentials"):
        nats_connect_options("nats://a:x@h:1,nats://b:y@h:2")


def test_the_secret_keys_never_print(monkeypatch):
    monkeypatch.setenv("AUTOPAY_SECRET_KEYS", "k1-very-secret,k2-older")
    settings = ServiceSettings()
    assert settings.secret_keys.get_secret_value() == "k1-very-secret,k2-older"
    assert "very-secret" not in repr(settings) and "very-secret" not in str(settings)
