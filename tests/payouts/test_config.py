"""The [payouts] section: the example file's loads; bad values name their key."""

import pytest

from cli.config import load_config
from payouts.config import PayoutsConfig, to_coins, to_units
from qscrypt.settings import ConfigError, load_section
from tests.test_config import ENV, EXAMPLE


def test_the_example_payouts_section_loads() -> None:
    config = load_section(PayoutsConfig, load_config(EXAMPLE, ENV).payouts, "payouts", ENV)
    ltc = config.coin("LTC")
    assert (ltc.scheme, ltc.minimum_units, ltc.rpc_password) == ("solo", 1_000_000, "rpcsecret")
    assert ltc.subsidy(0) == 50 * 10**8 and ltc.subsidy(840_000) == 25 * 10**8


@pytest.mark.parametrize(
    ("coin", "key", "problem"),
    [
        ({"fee_percent": 120}, "payouts.coins.LTC.fee_percent", "0..100"),
        ({"minimum": 0.000000001}, "payouts.coins.LTC.minimum", "more than 8 decimals"),
        ({"minimum": 0}, "payouts.coins.LTC.minimum", "more than 0"),
        ({"mode": "pool", "scheme": "solo"}, "payouts.coins.LTC.scheme", 'mode = "solo"'),
        ({"scheme": "prop"}, "payouts.coins.LTC.scheme", "one of"),
        ({"rpc_url": "ftp://x"}, "payouts.coins.LTC.rpc_url", "http"),
        ({"max_outputs": 5000}, "payouts.coins.LTC.max_outputs", "1..2500"),
        ({"minimun": 1}, "payouts.coins.LTC.minimun", "unknown key"),
    ],
)
def test_bad_values_name_their_key(coin: dict[str, object], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_section(PayoutsConfig, {"coins": {"LTC": coin}}, "payouts")
    assert key in str(err.value) and problem in str(err.value)


def test_units() -> None:
    assert to_units("0.125") == 12_500_000 and to_coins(12_500_000) == "0.12500000"
    assert to_coins(-3) == "-0.00000003" and to_coins(21 * 10**14) == "21000000.00000000"
