"""The gateway as a service, in process: health and readiness, metrics, the access log, the Redis cache, the factory."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")

from datasources import Host
from datasources.errors import ConfigurationError
from datasources.gateway import create_app
from datasources.gateway.access_log import JsonFormatter, mask_query
from datasources.gateway.redis_cache import RedisCache, redacted_url
from starlette.testclient import TestClient
from support.faultserver import Reply
from support.ports import free_port
from support.redis_server import RedisServer

TOKEN = "prod-S3cret-token-77"
LEE_CT = "2.25.149445395880599934171435059992354054150"


def _metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``, in the Prometheus text format."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_healthz_and_readyz_report_each_source_with_a_probe(sample_host: Host) -> None:
    client = TestClient(create_app(sample_host))
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    (source,) = body["sources"]
    assert source["name"] == sample_host.active_data_source_name
    assert source["probe"]["ok"] is True and source["probe"]["ms"] >= 0
    assert source["initialized"] is True  # the probe initialized it
    assert source["last_error"] is None


def test_readyz_is_503_with_the_backend_error_when_the_archive_fails(fault_server: Any) -> None:
    fault_server.script("/dicom-web/studies", Reply(500, b"boom"))
    host = Host.from_config({
        "dataSources": [{
            "namespace": "default.dataSourcesModule.dicomweb", "sourceName": "pacs",
            "configuration": {"qidoRoot": f"{fault_server.url}/dicom-web", "wadoRoot": f"{fault_server.url}/dicom-web",
                              "requestOptions": {"retries": 0}},
        }]
    })  # fmt: skip
    client = TestClient(create_app(host))
    labels = {"route": "/dicom-web/studies", "source": "pacs"}
    before = _metric(client.get("/metrics").text, "datasources_gateway_backend_errors_total", **labels)
    assert client.get("/dicom-web/studies").status_code == 502
    ready = client.get("/readyz")
    assert ready.status_code == 503
    (source,) = ready.json()["sources"]
    assert source["probe"]["ok"] is False and "HTTPError" in source["probe"]["error"]
    assert source["last_error"]["type"] == "HTTPError" and source["last_error"]["status"] == 502
    after = _metric(client.get("/metrics").text, "datasources_gateway_backend_errors_total", **labels)
    assert after - before == 1  # the metrics are the process's: other tests' requests count too


def test_health_needs_the_token_unless_public_health(sample_host: Host) -> None:
    guarded = TestClient(create_app(sample_host, token=TOKEN))
    assert guarded.get("/healthz").status_code == 401
    assert guarded.get("/readyz").status_code == 401
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    public = TestClient(create_app(sample_host, token=TOKEN, public_health=True))
    assert public.get("/healthz").status_code == 200
    assert public.get("/readyz").status_code == 200
    assert public.get("/metrics").status_code == 401  # metrics stay behind the token
    assert public.get("/dicom-web/studies").status_code == 401


def test_metrics_count_per_route_and_source_with_cache_outcomes(sample_host: Host) -> None:
    client = TestClient(create_app(sample_host, metadata_ttl=3600))
    before = client.get("/metrics").text
    route = "/dicom-web/studies/{study}/metadata"
    for _ in range(3):
        assert client.get(f"/dicom-web/studies/{LEE_CT}/metadata").status_code == 200
    assert client.get("/dicom-web/studies/1.2.3.4/metadata").status_code == 404
    text = client.get("/metrics").text
    source = sample_host.active_data_source_name

    def grew(name: str, **labels: str) -> float:
        return _metric(text, name, **labels) - _metric(before, name, **labels)

    assert grew("datasources_gateway_requests_total", route=route, source=source, status="200") == 3
    assert grew("datasources_gateway_requests_total", route=route, source=source, status="404") == 1
    assert grew("datasources_gateway_cache_total", route=route, source=source, result="miss") == 1
    assert grew("datasources_gateway_cache_total", route=route, source=source, layer="memory", result="hit") == 2
    assert grew("datasources_gateway_request_duration_seconds_count", route=route, source=source) == 4
    assert grew("datasources_gateway_response_bytes_total", route=route, source=source) > 3 * 1000


def test_access_log_line_per_request_with_secrets_masked(sample_host: Host, caplog: pytest.LogCaptureFixture) -> None:
    client = TestClient(create_app(sample_host))
    with caplog.at_level(logging.INFO, logger="datasources.gateway.access"):
        client.get("/dicom-web/studies?PatientName=LEE*&access_token=hunter2&X-Amz-Signature=abc")
        client.get(f"/dicom-web/studies/{LEE_CT}/metadata")
    lines = [r for r in caplog.records if r.name == "datasources.gateway.access"]
    assert len(lines) == 2
    first = lines[0].getMessage()
    assert "hunter2" not in first and "abc" not in first.split("?", 1)[1]
    assert first.startswith('"GET /dicom-web/studies?PatientName=LEE*&access_token=***&X-Amz-Signature=***" 400 ')
    fields = lines[1].access  # type: ignore[attr-defined]
    assert fields["status"] == 200 and fields["bytes"] > 1000 and fields["cache"] == "miss"
    assert fields["source"] == sample_host.active_data_source_name and fields["duration_ms"] > 0
    as_json = json.loads(JsonFormatter().format(lines[1]))
    assert as_json["logger"] == "datasources.gateway.access" and as_json["status"] == 200
    assert as_json["path"] == f"/dicom-web/studies/{LEE_CT}/metadata"


def test_mask_query_keeps_plain_values_and_masks_credentials() -> None:
    assert mask_query("") == ""
    assert mask_query("limit=1&includefield=all") == "limit=1&includefield=all"
    assert mask_query("token=a&Password=b&sig=c&key=d&code=e") == "token=***&Password=***&sig=***&key=***&code=***"


def test_redis_cache_shares_metadata_between_two_apps_and_survives_an_outage(
    sample_host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisServer() as redis:
        first = TestClient(create_app(sample_host, cache=redis.url, metadata_ttl=60))
        second = TestClient(create_app(Host(), cache=redis.url, metadata_ttl=60))  # its own store, nothing loaded
        with caplog.at_level(logging.INFO, logger="datasources.gateway.access"):
            a = first.get(f"/dicom-web/studies/{LEE_CT}/metadata")
            b = second.get(f"/dicom-web/studies/{LEE_CT}/metadata")
            q1 = first.get("/dicom-web/studies?PatientName=LEE*")
            q2 = second.get("/dicom-web/studies?PatientName=LEE*")
        assert a.status_code == b.status_code == 200 and a.content == b.content
        assert q1.content == q2.content and len(q1.json()) == 2
        caches = [r.access["cache"] for r in caplog.records if hasattr(r, "access")]  # type: ignore[attr-defined]
        assert caches == ["miss", "redis", "miss", "redis"]
        redis.stop()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="datasources.gateway"):
            for _ in range(3):
                assert second.get(f"/dicom-web/studies/{LEE_CT}/metadata").content == a.content
                assert second.get("/dicom-web/studies?PatientName=LEE*").status_code == 200
            ready = second.get("/readyz").json()
        warnings = [r.getMessage() for r in caplog.records if "Redis cache" in r.getMessage()]
        assert len(warnings) == 1, warnings  # one warning per outage, not one per request
        assert ready["cache"]["up"] is False and ready["status"] == "ready"


def test_redis_cache_bounds_studies_and_forgets_after_a_stow() -> None:
    with RedisServer() as redis:
        cache = RedisCache(redis.url, ttl=60, max_studies=2)
        for i in range(4):
            cache.put_metadata("s", f"1.{i}", None, "http://gw/dicom-web", b"body%d" % i)
        assert cache.get_metadata("s", "1.0", None, "http://gw/dicom-web") is None  # the oldest went first
        assert cache.get_metadata("s", "1.3", None, "http://gw/dicom-web") == b"body3"
        cache.put_qido("s", "study|q", b"[]")
        assert cache.get_qido("s", "study|q") == b"[]"
        cache.forget_study("s", "1.3")
        assert cache.get_metadata("s", "1.3", None, "http://gw/dicom-web") is None
        assert cache.get_qido("s", "study|q") is None  # a STOW makes the source's searches stale
        assert RedisCache(redis.url, ttl=0, max_studies=2).get_qido("s", "x") is None  # ttl 0: no cache


def test_redis_url_password_is_never_shown() -> None:
    assert redacted_url("redis://user:pw123@cache:6379/0") == "redis://user:***@cache:6379/0"
    cache = RedisCache("redis://:pw123@127.0.0.1:1/0", ttl=1, max_studies=1)
    assert "pw123" not in repr(cache) and "pw123" not in cache.url
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisCache("http://x", ttl=1, max_studies=1)


def test_a_redis_that_does_not_answer_is_no_cache() -> None:
    port = free_port()  # a port nobody listens on
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", ttl=30, max_studies=5)
    assert cache.get_metadata("s", "1", None, "r") is None
    assert cache.up is False
    cache.put_metadata("s", "1", None, "r", b"x")  # no error either


def test_factory_reads_the_configuration_and_options_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "app.json"
    entry = {
        "namespace": "default.dataSourcesModule.dicomjson",
        "sourceName": "mine",
        "configuration": {"bundled": "sample"},
    }
    config.write_text(json.dumps({"dataSources": [entry]}), encoding="utf-8")
    monkeypatch.setenv("DATASOURCES_CONFIG", str(config))
    monkeypatch.setenv("GW_TOKEN", TOKEN)
    monkeypatch.setenv("DATASOURCES_GATEWAY", json.dumps({"token_env": "GW_TOKEN", "public_health": True}))
    app = create_app()
    assert app.state.gateway.sources == ("mine",)
    client = TestClient(app)
    assert client.get("/healthz").status_code == 200
    assert client.get("/dicom-web/studies").status_code == 401
    assert client.get("/dicom-web/studies", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    monkeypatch.setenv("DATASOURCES_GATEWAY", json.dumps({"cache_ttl": 3}))
    with pytest.raises(ConfigurationError, match="unknown option 'cache_ttl'"):
        create_app()
    monkeypatch.setenv("DATASOURCES_GATEWAY", json.dumps({"metadata_ttl": "soon"}))
    with pytest.raises(ConfigurationError, match="metadata_ttl must be int or float"):
        create_app()
    monkeypatch.setenv("DATASOURCES_GATEWAY", json.dumps({"token_env": "NOT_SET_ANYWHERE"}))
    with pytest.raises(ConfigurationError, match="NOT_SET_ANYWHERE"):
        create_app()
    monkeypatch.delenv("DATASOURCES_GATEWAY")
    monkeypatch.setenv("DATASOURCES_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigurationError, match=r"missing\.yaml"):
        create_app()
    for name in ("datasources", "uvicorn"):  # the factory set up logging for a server process: undo it here
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if h.get_name() != "datasources-gateway"]
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def test_a_draining_gateway_answers_503_and_closes_the_connection(sample_host: Host) -> None:
    app = create_app(sample_host)
    client = TestClient(app)
    assert client.get("/healthz").status_code == 200
    app.state.health.draining = True
    answer = client.get("/dicom-web/studies")
    assert answer.status_code == 503 and answer.headers["connection"] == "close"
    assert answer.json()["type"] == "ShuttingDown"
