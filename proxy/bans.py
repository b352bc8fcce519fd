"""The operator's bans (table `bans`, set from the dashboard's admin page): which worker names
and IPs the proxy refuses. Pure: the app's poll loop feeds it what the database holds."""

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BanList:
    workers: frozenset[str] = field(default_factory=frozenset)
    """Banned worker names; a name without a dot bans its whole account (every ACCOUNT.RIG)."""
    ips: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str]]) -> "BanList":
        """From (kind, value) rows; kinds other than worker and ip are left out."""
        rows = list(rows)
        return cls(frozenset(v for k, v in rows if k == "worker"), frozenset(v for k, v in rows if k == "ip"))

    def refuses_worker(self, name: str) -> bool:
        return name in self.workers or name.split(".", 1)[0] in self.workers

    def refuses_ip(self, ip: str) -> bool:
        return ip in self.ips
