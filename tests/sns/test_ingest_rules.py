"""The ingest endpoint's rules on their own: the per-client rate, the Host check."""

from __future__ import annotations

from daemon.sns.ingest import RateLimiter, _host_problem


def test_the_rate_limit_is_a_bucket_per_client_refilled_with_time():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=4, clock=lambda: now[0])
    assert limiter.take("a", 4) == 0.0
    assert limiter.take("a", 1) == 0.5  # one more token in half a second
    assert limiter.take("b", 4) == 0.0  # another client has its own bucket
    now[0] = 1.0
    assert limiter.take("a", 2) == 0.0
    assert limiter.take("a", 5) == float("inf")  # more than the burst: never
    for i in range(2000):
        limiter.take(f"client-{i}", 1)
    assert len(limiter._buckets) == 1024  # bounded: the least recent are forgotten


def test_the_host_header_must_name_this_listener():
    ok = ["127.0.0.1:9180", "localhost:9180", "[::1]:9180", "LOCALHOST:9180", "box.lan:9180"]
    for host in ok:
        assert _host_problem(host, 9180, ["box.lan"]) is None, host
    for host in ("evil.example:9180", "127.0.0.1:9181", "127.0.0.1", "", "[::1]", "a:b:c"):
        assert _host_problem(host, 9180, []) is not None, host
