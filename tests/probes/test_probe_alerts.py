"""Alert semantics with simulated time: thresholds, reminders, maintenance across DST, storm
control, notification format (SMS ≤ 140 bytes), the scheduler, history, config."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from collections import Counter
from typing import Any

import pytest

from daemon.base.stop import StopToken
from daemon.config import ConfigError
from daemon.config.probes import AlertConfig, MaintenanceWindow, ProbesConfig
from daemon.probes.alerts import AlertMachine, AlertState, Event, Notice
from daemon.probes.history import EndpointHistory
from daemon.probes.maintenance import in_maintenance
from daemon.probes.notify import SMS_MAX_BYTES, Targets, messages, sms_line, subject
from daemon.probes.result import ProbeResult, Reason
from daemon.probes.scheduler import Job, Scheduler, phase
from daemon.probes.storm import ConnectivityGuard, Grouper
from daemon.workers import load_config

T0 = 1_700_000_000.0


def result(ok: bool, at: float = T0, *, name: str = "shop", **kw: Any) -> ProbeResult:
    return ProbeResult(
        endpoint=name, kind="http", target="http://x", success=ok,
        reason=None if ok else kw.pop("reason", Reason.TIMEOUT), detail=kw.pop("detail", "d"),
        started_at=at, duration=kw.pop("duration", 0.25), **kw,
    )  # fmt: skip


def feed(machine: AlertMachine, state: AlertState, outcomes: str, *, start: float = T0,
         step: float = 60.0, announce: bool = True) -> list[Event]:  # fmt: skip
    """Feed `outcomes` ('.' success, 'x' failure) one per `step`; announce what comes out."""
    events = []
    for i, mark in enumerate(outcomes):
        now = start + i * step
        notice = machine.observe(state, result(mark == ".", now), now)
        if notice is not None:
            events.append(notice.event)
            if announce:
                AlertMachine.announced(state, notice, [i], now)
    return events


# --- the state machine -----------------------------------------------------------------------


def test_failure_threshold_opens_once_and_success_threshold_resolves():
    m, s = AlertMachine(AlertConfig(failure_threshold=3, success_threshold=2)), AlertState("shop")
    assert feed(m, s, "xx.xx") == []  # a success resets the failure streak
    assert feed(m, s, "x") == [Event.OPEN]
    assert s.open and s.announced
    assert feed(m, s, "xxxx") == []  # announced: no repeat without reminders
    assert feed(m, s, ".x.") == []  # one success is not enough
    assert feed(m, s, ".") == [Event.RESOLVED]
    assert not s.open


def test_send_on_resolved_off_closes_silently():
    m, s = AlertMachine(AlertConfig(failure_threshold=1, send_on_resolved=False)), AlertState("a")
    assert feed(m, s, "x..") == [Event.OPEN]
    assert not s.open


def test_reminders_repeat_at_the_interval_while_open():
    m = AlertMachine(AlertConfig(failure_threshold=1, reminder_interval="5m"))
    s = AlertState("shop")
    # one failure a minute for 16 minutes: open, then reminders at 5, 10, 15 minutes
    assert feed(m, s, "x" * 16) == [Event.OPEN] + [Event.REMINDER] * 3


def test_reminders_must_be_at_least_five_minutes():
    with pytest.raises(ValueError, match="at least 300"):
        AlertConfig(reminder_interval=60)


def test_an_unannounced_alert_is_asked_for_again_by_the_next_failure():
    m, s = AlertMachine(AlertConfig(failure_threshold=2)), AlertState("shop")
    assert feed(m, s, "xx", announce=False) == [Event.OPEN]
    AlertMachine.not_sent(s)  # the outbox was full, or the host offline
    assert feed(m, s, "x") == [Event.OPEN]
    assert s.announced


def test_a_notice_waiting_in_the_group_window_is_not_asked_for_twice():
    m, s = AlertMachine(AlertConfig(failure_threshold=1)), AlertState("shop")
    assert feed(m, s, "xxx", announce=False) == [Event.OPEN]


def test_a_resolution_of_a_never_announced_alert_is_not_sent():
    m, s = AlertMachine(AlertConfig(failure_threshold=1, success_threshold=1)), AlertState("a")
    feed(m, s, "x", announce=False)
    AlertMachine.not_sent(s)
    assert feed(m, s, ".") == []
    assert not s.open


def test_delivery_status_counts_only_what_aws_accepted():
    m, s = AlertMachine(AlertConfig(failure_threshold=1)), AlertState("shop")
    notice = m.observe(s, result(False), T0)
    assert notice is not None
    AlertMachine.announced(s, notice, [7, 8], T0)  # the topic and one phone number
    assert s.last_notification["status"] == "pending"
    assert AlertMachine.settled(s, 7, "delivered", T0 + 1)
    assert AlertMachine.settled(s, 8, "dead", T0 + 2)
    assert s.last_notification["status"] == "delivered" and s.announced
    assert not AlertMachine.settled(s, 99, "delivered", T0)


def test_an_open_alert_whose_every_message_was_rejected_is_announced_again():
    m, s = AlertMachine(AlertConfig(failure_threshold=1)), AlertState("shop")
    notice = m.observe(s, result(False), T0)
    assert notice is not None
    AlertMachine.announced(s, notice, [1], T0)
    AlertMachine.settled(s, 1, "dead", T0 + 1)
    assert not s.announced
    assert feed(m, s, "x", start=T0 + 60) == [Event.OPEN]


def test_alert_state_round_trips_through_json():
    s = AlertState("shop", open=True, announced=True, failures=4, pending={3: "open"})
    again = AlertState.from_json(json.loads(json.dumps(s.to_json())))
    assert again == s


# --- maintenance windows ---------------------------------------------------------------------


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def test_maintenance_window_in_a_time_zone_follows_the_wall_clock_across_dst():
    w = MaintenanceWindow(start="02:30", duration="1h", timezone="Europe/Paris")
    # Winter: 02:30 CET = 01:30 UTC.
    assert in_maintenance([w], utc(2025, 3, 29, 1, 45))
    assert not in_maintenance([w], utc(2025, 3, 29, 2, 45))
    # Spring forward (30 March 2025, 02:00 -> 03:00): 02:30 does not exist; the window starts
    # when the clocks jump (01:00 UTC) and lasts one real hour.
    assert not in_maintenance([w], utc(2025, 3, 30, 0, 59))
    assert in_maintenance([w], utc(2025, 3, 30, 1, 30))
    assert not in_maintenance([w], utc(2025, 3, 30, 2, 0))
    # Summer: 02:30 CEST = 00:30 UTC.
    assert in_maintenance([w], utc(2025, 3, 31, 0, 45))
    assert not in_maintenance([w], utc(2025, 3, 31, 1, 45))
    # Fall back (26 October 2025): 02:30 happens twice; the window starts at the first.
    assert in_maintenance([w], utc(2025, 10, 26, 0, 30))
    assert not in_maintenance([w], utc(2025, 10, 26, 1, 30))
    assert in_maintenance([w], utc(2025, 10, 27, 1, 45))  # winter again: 01:30 UTC


def test_maintenance_window_days_and_past_midnight():
    w = MaintenanceWindow(start="23:00", duration="3h", timezone="UTC", days=["sun"])
    assert in_maintenance([w], utc(2025, 6, 1, 23, 30))  # Sunday night
    assert in_maintenance([w], utc(2025, 6, 2, 1, 30))  # ... into Monday
    assert not in_maintenance([w], utc(2025, 6, 2, 23, 30))  # Monday night: not a window day


def test_maintenance_silences_alerts_in_a_worker_driven_by_a_fake_clock(tmp_path):
    from tests.probes.test_probes_worker import fake_worker

    clock = {"now": utc(2025, 3, 30, 0, 50)}  # 10 minutes before the window (spring forward)
    worker = fake_worker(
        tmp_path,
        alert={"failure_threshold": 2},
        maintenance=[{"start": "02:30", "duration": "1h", "timezone": "Europe/Paris"}],
        clock=lambda: clock["now"],
    )

    async def run() -> list[Notice]:
        notices = []
        for minute in range(0, 120, 5):
            clock["now"] = utc(2025, 3, 30, 0, 50) + minute * 60
            worker.record(result(False, clock["now"], name="ep"))
            notices += worker.grouper.due(0, everything=True)
        return notices

    groups = asyncio.run(run())
    opened_at = [g[0].at for g in groups]
    # Two failures before the window (00:50, 00:55) open it at 00:55 UTC; nothing while silenced.
    assert opened_at == [utc(2025, 3, 30, 0, 55)]
    worker.states["ep"] = AlertState("ep")
    clock["now"] = utc(2025, 3, 30, 1, 30)
    worker.record(result(False, clock["now"], name="ep"))
    worker.record(result(False, clock["now"], name="ep"))
    assert worker.silenced["ep"] == "maintenance" and not worker.states["ep"].open


# --- notifications ---------------------------------------------------------------------------


def notice(name: str, event: Event = Event.OPEN, **kw: Any) -> Notice:
    r = result(False, name=name, **kw)
    return Notice(event, name, T0, r, T0 - 120, str(r.reason), r.detail)


def test_sms_line_has_name_state_reason_latency():
    assert sms_line([notice("shop")], host="h") == "DOWN shop: timeout (250ms)"
    n = notice("api", reason=Reason.STATUS, status=503)
    assert sms_line([n], host="h") == "DOWN api: status 503 (250ms)"
    up = Notice(Event.RESOLVED, "shop", T0, result(True), T0 - 60, None, "")
    assert sms_line([up], host="h") == "UP shop (250ms)"


def test_sms_stays_within_140_bytes_with_long_names_hosts_and_groups():
    long = "n" * 64
    assert len(sms_line([notice(long)], host="h").encode()) <= SMS_MAX_BYTES
    group = [notice(f"{long[:60]}{i:04d}") for i in range(30)]
    line = sms_line(group, host="h")
    assert len(line.encode()) <= SMS_MAX_BYTES and line.startswith("30 DOWN: ") and "+" in line
    offline = Notice(Event.HOST_OFFLINE, "*", T0, None, None, "connectivity", "")
    line = sms_line([offline], host="pi-" + "é" * 300)
    assert len(line.encode()) <= SMS_MAX_BYTES and line.isascii()


def test_topic_message_is_full_json_with_subject_and_attributes():
    msgs = messages(
        [notice("shop"), notice("api")], Targets("alerts", ("+14155550100",)),
        env="prod", urls={"shop": "https://shop", "api": "https://api"}, host="h",
    )  # fmt: skip
    sns, sms = msgs
    assert (sns.kind, sns.target, sms.kind, sms.target) == ("sns", "alerts", "sms", "+14155550100")
    doc = json.loads(sns.body["message"])
    assert doc["event"] == "open" and doc["count"] == 2
    assert [a["endpoint"] for a in doc["alerts"]] == ["shop", "api"]
    assert doc["alerts"][0]["url"] == "https://shop" and doc["alerts"][0]["down_for_s"] == 120
    assert sns.body["subject"] == "[awsd prod] 2 endpoints DOWN: shop, api"
    assert sns.body["attributes"] == {"event": "open", "endpoint": "*", "env": "prod"}


def test_subject_is_ascii_and_under_100_characters():
    text = subject([notice("x" * 64), notice("y" * 64)], env="prod", host="h")
    assert len(text) < 100 and text.isascii()


# --- storm control ---------------------------------------------------------------------------


def test_grouper_releases_notices_together_after_the_window():
    g = Grouper(window=10)
    g.add(notice("a"), 100.0)
    g.add(notice("b"), 105.0)
    g.add(notice("c", Event.RESOLVED), 106.0)
    assert g.due(109.0) == [] and g.next_due() == 110.0
    groups = g.due(110.0)
    assert [[n.endpoint for n in grp] for grp in groups] == [["a", "b"]]
    assert [[n.endpoint for n in grp] for grp in g.due(200.0)] == [["c"]]


async def test_connectivity_guard_declares_offline_after_failed_rounds_and_back_online():
    answers = [False]

    async def check() -> list[ProbeResult]:
        return [result(answers[0])]

    guard = ConnectivityGuard(check, offline_after=2, recheck_within=0)
    assert await guard.round(1) is None and guard.online
    assert await guard.round(2) is Event.HOST_OFFLINE and not guard.online
    answers[0] = True
    assert await guard.round(3) is Event.HOST_ONLINE and guard.online
    answers[0] = False
    online, change = await guard.confirm_online(4)  # alerts waiting: one failed check is enough
    assert (online, change) == (False, Event.HOST_OFFLINE)


# --- scheduler -------------------------------------------------------------------------------


def test_phase_is_deterministic_and_spreads_endpoints():
    assert phase("shop", 60, T0) == phase("shop", 60, T0)
    assert phase("shop", 60, T0 + 60) == pytest.approx(phase("shop", 60, T0))
    slots = sorted(phase(f"ep{i}", 10, T0) for i in range(1000))
    assert slots[0] < 0.1 and slots[-1] > 9.8
    assert max(b - a for a, b in itertools.pairwise(slots)) < 0.2  # no big gaps
    # Starts fall on 0.1 s slots, so the endpoints of one slot start in one wake-up; every
    # slot is used and none takes a large share.
    per_slot = Counter(round(p, 6) for p in slots)
    assert len(per_slot) == 100 and max(per_slot.values()) <= 30
    assert all(abs(p * 10 - round(p * 10)) < 1e-6 for p in phase_grid(T0))
    # A short interval gets slots a tenth of it apart.
    assert len({round(phase(f"ep{i}", 0.3, T0), 6) for i in range(200)}) == 10


def phase_grid(wall: float) -> list[float]:
    """Phases at a wall time on the slot grid: they are themselves on the grid."""
    return [phase(f"ep{i}", 10, wall) for i in range(50)]


async def test_scheduler_runs_start_to_start_and_a_slow_job_delays_nobody():
    starts: dict[str, list[float]] = {"fast": [], "slow": []}
    loop = asyncio.get_running_loop()

    async def run(name: str) -> None:
        starts[name].append(loop.time())
        if name == "slow":
            await asyncio.sleep(0.15)  # most of its interval

    jobs = [Job("fast", 0.1, 0.05), Job("slow", 0.2, 0.16)]
    scheduler = Scheduler(jobs, run, concurrency=10)
    stop = StopToken()
    task = asyncio.create_task(scheduler.run(stop))
    await asyncio.sleep(1.05)
    stop.stop(loop.time() + 1)
    await task
    fast = starts["fast"]
    assert len(fast) >= 8
    gaps = [b - a for a, b in itertools.pairwise(fast)]
    # start to start: the gaps average the interval (no drift from the job's own duration)
    assert sum(gaps) / len(gaps) == pytest.approx(0.1, abs=0.02)
    assert scheduler.skipped == 0


async def test_scheduler_stop_cancels_checks_in_flight_and_leaks_nothing():
    began = asyncio.Event()

    async def run(_: str) -> None:
        began.set()
        await asyncio.sleep(3600)

    scheduler = Scheduler([Job("hang", 1.0, 0.8)], run, concurrency=1)
    stop = StopToken()
    task = asyncio.create_task(scheduler.run(stop))
    await asyncio.wait_for(began.wait(), 5)
    stop.stop(asyncio.get_running_loop().time() + 0.1)
    await asyncio.wait_for(task, 5)
    assert scheduler.in_flight == 0


async def test_scheduler_skips_a_check_that_finds_no_slot_in_time():
    async def run(_: str) -> None:
        await asyncio.sleep(0.3)

    jobs = [Job(f"j{i}", 0.5, 0.4) for i in range(3)]
    skipped: list[str] = []
    scheduler = Scheduler(jobs, run, concurrency=1, on_skip=lambda n, _: skipped.append(n))
    stop = StopToken()
    task = asyncio.create_task(scheduler.run(stop))
    await asyncio.sleep(0.6)
    stop.stop(asyncio.get_running_loop().time() + 1)
    await task
    assert skipped  # one slot, three jobs of 0.3 s with 0.1 s to spare: some must be skipped


# --- history ---------------------------------------------------------------------------------


def test_uptime_ratios_over_24h_and_7d():
    from collections import deque

    h = EndpointHistory(deque(maxlen=5))
    now = T0
    for i in range(48):  # one check an hour for two days: the older day all failures
        h.add(result(i >= 24, now - (47 - i) * 3600))
    assert h.uptime(86400, now) == 1.0
    assert h.uptime(7 * 86400, now) == 0.5
    assert len(h.recent) == 5


# --- config ----------------------------------------------------------------------------------


def test_endpoints_inherit_defaults_and_override_key_by_key():
    cfg = ProbesConfig.model_validate(
        {
            "defaults": {"interval": "30s", "alert": {"topic": "alerts", "failure_threshold": 5}},
            "endpoints": {
                "a": {"url": "https://a.example"},
                "b": {"url": "tcp://b:22", "alert": {"sms": ["+14155550100"]}},
            },
        }
    )
    a, b = cfg.endpoints["a"], cfg.endpoints["b"]
    assert a.interval == 30 and a.alert.topic == "alerts" and a.check == "http"
    assert b.alert.topic == "alerts" and b.alert.failure_threshold == 5 and b.check == "tcp"


def test_config_errors_name_the_endpoint_and_field(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'env = "test"\n[probes.endpoints.shop]\nurl = "https://shop"\ninterval = 10\ntimeout = 9\n'
        '[probes.endpoints.db]\nurl = "ftp://db"\n'
        '[probes.endpoints.sms]\nurl = "https://x"\nalert = { sms = ["0612"] }\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = info.value.render()
    assert "probes.endpoints.shop" in text and "80%" in text
    assert "probes.endpoints.db.url" in text
    assert "probes.endpoints.sms.alert.sms" in text and "E.164" in text


def test_a_missing_ca_file_is_a_config_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'env = "test"\n[probes.endpoints.shop]\nurl = "https://shop"\n'
        'tls = { ca_file = "/nonexistent/ca.pem" }\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "probes.endpoints.shop.tls.ca_file: no such file" in info.value.render()
