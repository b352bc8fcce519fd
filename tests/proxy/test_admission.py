"""The admission rules, pure and fed the time: caps, bans, connect rate, bounded memory."""

from proxy import admission
from proxy.admission import Admission, BanPolicy
from proxy.config import LimitsConfig


def test_caps_total_and_per_ip_and_release() -> None:
    rules = Admission(LimitsConfig(max_connections=3, max_connections_per_ip=2))
    for ip in ("a", "a", "b"):
        assert rules.refusal(ip, 0.0) is None
        rules.admitted(ip)
    assert rules.refusal("c", 0.0) == "proxy full: connection limit reached"
    rules.released("b")
    assert rules.refusal("a", 0.0) == "too many connections from this IP"
    assert rules.refusal("c", 0.0) is None
    rules.released("a", 2)
    assert rules.connections == 0 and "a" not in rules.per_ip


def test_a_ban_holds_until_it_expires() -> None:
    rules = Admission(LimitsConfig())
    rules.ban("a", 60.0, now=100.0)
    assert rules.refusal("a", 159.0) == "IP temporarily banned for invalid shares"
    assert rules.is_banned("a", 159.0)
    assert not rules.is_banned("a", 160.5)
    assert rules.refusal("a", 160.5) is None and "a" not in rules.banned


def test_connect_rate_burst_then_steady() -> None:
    rules = Admission(LimitsConfig(connect_burst_per_ip=3, connects_per_ip_per_s=2.0))
    assert [rules.refusal("a", 0.0) for _ in range(4)] == [None, None, None,
                                                           "connecting too often from this IP"]
    assert rules.refusal("b", 0.0) is None
    assert rules.refusal("a", 0.4) == "connecting too often from this IP"
    assert rules.refusal("a", 0.5) is None  # half a second at 2 per second: one more


def test_remembered_rates_stay_bounded(monkeypatch) -> None:
    monkeypatch.setattr(admission, "_MAX_RATE_ENTRIES", 100)
    rules = Admission(LimitsConfig(connect_burst_per_ip=2, connects_per_ip_per_s=1.0))
    for n in range(100):
        rules.refusal(f"10.0.0.{n}", 0.0)
    rules.refusal("busy", 0.0)  # at the bound, nobody has rested yet: nothing to forget
    assert len(rules._connects) == 101
    rules.refusal("late", 10.0)  # ten seconds on, every allowance is full again: they go
    assert len(rules._connects) == 1 and "late" in rules._connects


def test_the_ban_policy_waits_for_enough_shares_then_judges_recent_ones() -> None:
    policy = BanPolicy(LimitsConfig(ban_min_shares=10, ban_invalid_ratio=0.5))
    # Nine invalid shares: not yet enough to judge, however bad.
    assert not any(policy.share("10.0.0.1", valid=False) for _ in range(9))
    assert policy.share("10.0.0.1", valid=False)  # the tenth: 10 of 10 invalid
    # Another IP's shares are its own: a good miner beside it is never banned.
    assert not any(policy.share("10.0.0.2", valid=True) for _ in range(100))
    # Half invalid is the line; just under it passes.
    mixed = BanPolicy(LimitsConfig(ban_min_shares=10, ban_invalid_ratio=0.5))
    verdicts = [mixed.share("10.0.0.3", valid=n % 5 != 0) for n in range(10)]
    assert verdicts == [False] * 10  # 2 of 10 invalid


def test_the_ban_policy_forgets_old_behaviour() -> None:
    """A miner with a long good history that turns bad is banned within a few judging windows,
    not after its whole history is outweighed: counts halve as they grow."""
    policy = BanPolicy(LimitsConfig(ban_min_shares=10, ban_invalid_ratio=0.5))
    assert not any(policy.share("10.0.0.1", valid=True) for _ in range(10_000))
    bad = next(n for n in range(1, 1000) if policy.share("10.0.0.1", valid=False))
    assert bad <= 40, bad  # against 10,000 earlier good shares, never halved, it would take 10,000
    policy.forget("10.0.0.1")
    assert not policy.share("10.0.0.1", valid=False)  # forgotten: starts counting again
