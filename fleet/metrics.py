"""Prometheus metrics of the fleet poller, one series per registered device (and per chain and fan
of it). Devices are few and named by the operator, so the `device` label is bounded by the
registry (`fleet.max_devices`); a device that is unregistered leaves the output with its series."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fleet.reading import Reading


class FleetMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        d = ["device"]
        self.devices = Gauge("qscrypt_asic_devices", "Devices registered for polling", registry=r)
        self.up = Gauge("qscrypt_asic_up", "1 when the device's last poll gave a reading", d, registry=r)
        self.polls = Counter("qscrypt_asic_polls_total", "Polls by result (ok, error)", ["device", "result"],
                             registry=r)
        self.poll_seconds = Histogram("qscrypt_asic_poll_seconds", "Time to read one device", registry=r,
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.hashrate = Gauge("qscrypt_asic_hashrate_hs", "Hashrate the device reports now (H/s)", d,
                              registry=r)
        self.hashrate_avg = Gauge("qscrypt_asic_hashrate_avg_hs", "Hashrate the device reports since it "
                                  "started (H/s)", d, registry=r)
        self.chain_hashrate = Gauge("qscrypt_asic_chain_hashrate_hs", "Hashrate of one hash board (H/s)",
                                    ["device", "chain"], registry=r)
        self.temp_max = Gauge("qscrypt_asic_temperature_max_celsius", "Hottest board or chip", d, registry=r)
        self.board_temp = Gauge("qscrypt_asic_board_temperature_celsius", "Board temperature",
                                ["device", "chain"], registry=r)
        self.chip_temp = Gauge("qscrypt_asic_chip_temperature_celsius", "Chip temperature of a board",
                               ["device", "chain"], registry=r)
        self.fan = Gauge("qscrypt_asic_fan_rpm", "Fan speed", ["device", "fan"], registry=r)
        self.hw_errors = Gauge("qscrypt_asic_hardware_errors", "Hardware errors since the device started", d,
                               registry=r)
        self.hw_error_rate = Gauge("qscrypt_asic_hardware_errors_per_second",
                                   "Hardware errors a second between the last two polls", d, registry=r)
        self.chain_hw_errors = Gauge("qscrypt_asic_chain_hardware_errors", "Hardware errors of one board",
                                     ["device", "chain"], registry=r)
        self.chips_bad = Gauge("qscrypt_asic_chips_bad", "Chips the device marks bad (x)", d, registry=r)
        self.chain_chips_bad = Gauge("qscrypt_asic_chain_chips_bad", "Bad chips of one board",
                                     ["device", "chain"], registry=r)
        self.accepted = Gauge("qscrypt_asic_pool_accepted", "Shares its pools accepted, as it counts them", d,
                              registry=r)
        self.rejected = Gauge("qscrypt_asic_pool_rejected", "Shares its pools rejected, as it counts them", d,
                              registry=r)
        self.uptime = Gauge("qscrypt_asic_uptime_seconds", "Seconds since the mining software started", d,
                            registry=r)
        self.window_hashrate = Gauge("qscrypt_asic_window_hashrate_hs", "The device's own hashrate over "
                                     "the comparison window (its hash counter, else its mean rate)", d,
                                     registry=r)
        self.proxy_hashrate = Gauge("qscrypt_asic_proxy_hashrate_hs", "Hashrate the proxy measured from the "
                                    "device's worker's accepted shares over the same window", d, registry=r)
        self.window_shares = Gauge("qscrypt_asic_window_shares", "Accepted shares in the window (the proxy's "
                                   "figure is good to about 1/sqrt of this)", d, registry=r)
        self.disagreement = Gauge("qscrypt_asic_hashrate_disagreement_ratio", "(device - proxy) / device "
                                  "hashrate over the window", d, registry=r)
        self._labels: dict[str, set[tuple[Gauge, tuple[str, ...]]]] = {}

    def _set(self, gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
        if value is None:
            return
        gauge.labels(*labels).set(value)
        self._labels.setdefault(labels[0], set()).add((gauge, labels))

    def show(self, device: str, reading: Reading, hw_error_rate: float | None) -> None:
        """Replaces the device's series with those of `reading` (a board that vanished leaves)."""
        self.forget(device, keep_counters=True)
        s, d = self._set, (device,)
        s(self.up, d, 1)
        s(self.hashrate, d, reading.hashrate_hs)
        s(self.hashrate_avg, d, reading.hashrate_avg_hs)
        s(self.temp_max, d, reading.temp_max_c)
        s(self.hw_errors, d, reading.hw_errors)
        s(self.hw_error_rate, d, hw_error_rate)
        s(self.chips_bad, d, reading.chips_bad)
        s(self.accepted, d, reading.accepted)
        s(self.rejected, d, reading.rejected)
        s(self.uptime, d, reading.elapsed_s)
        for chain in reading.chains:
            c = (device, str(chain.index))
            s(self.chain_hashrate, c, chain.hashrate_hs)
            s(self.board_temp, c, chain.temp_board_c)
            s(self.chip_temp, c, chain.temp_chip_c)
            s(self.chain_hw_errors, c, chain.hw_errors)
            s(self.chain_chips_bad, c, chain.chips_bad)
        for i, rpm in enumerate(reading.fans_rpm, 1):
            s(self.fan, (device, str(i)), rpm)

    def down(self, device: str) -> None:
        """A failed poll: the device's figures are no longer current, so they leave the output
        (a stale temperature must not look fine); `up` says 0."""
        self.forget(device, keep_counters=True)
        self._set(self.up, (device,), 0)

    def compare(self, device: str, device_hs: float, proxy_hs: float, shares: int,
                ratio: float | None) -> None:
        d = (device,)
        self._set(self.window_hashrate, d, device_hs)
        self._set(self.proxy_hashrate, d, proxy_hs)
        self._set(self.window_shares, d, shares)
        if ratio is not None:
            self._set(self.disagreement, d, ratio)

    def forget(self, device: str, keep_counters: bool = False) -> None:
        comparison = {self.window_hashrate, self.proxy_hashrate, self.window_shares, self.disagreement}
        kept = set()
        for gauge, labels in self._labels.pop(device, set()):
            if keep_counters and gauge in comparison:
                kept.add((gauge, labels))
                continue
            try:
                gauge.remove(*labels)
            except KeyError:
                pass
        if kept:
            self._labels[device] = kept
        if not keep_counters:
            for result in ("ok", "error"):
                try:
                    self.polls.remove(device, result)
                except KeyError:
                    pass
