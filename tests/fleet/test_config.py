"""The [fleet] section: the example file's loads; bad values name their key."""

import pytest

from cli.config import load_config
from fleet.config import FleetConfig
from qscrypt.settings import ConfigError, load_section
from tests.test_config import ENV, EXAMPLE


def test_example_fleet_section_loads() -> None:
    config = load_section(FleetConfig, load_config(EXAMPLE, ENV).fleet, "fleet", ENV)
    (device,) = config.devices
    assert (device.name, device.port, device.worker, device.rate_unit) == ("l3-rack1", 4028, "farm.l3-rack1",
                                                                           "auto")
    assert config.metrics_port == 9102


@pytest.mark.parametrize(("data", "key"), [
    ({"poll_s": 30, "window_s": 40}, "fleet.window_s"),
    ({"concurrency": 0}, "fleet.concurrency"),
    ({"devices": [{"name": "a", "host": "h"}, {"name": "a", "host": "h2"}]}, "fleet.devices.1.name"),
    ({"devices": [{"name": "bad name", "host": "h"}]}, "fleet.devices[0]"),
    ({"devices": [{"name": "a", "host": "h", "port": 70000}]}, "fleet.devices[0]"),
    ({"devices": [{"name": "a", "host": "h", "rate_unit": "EH"}]}, "fleet.devices[0].rate_unit"),
    ({"devices": [{"name": "a", "hots": "h"}]}, "fleet.devices[0]"),
])
def test_bad_fleet_config_names_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_section(FleetConfig, data, "fleet")
    assert str(err.value).startswith(f"config key '{key}"), str(err.value)
