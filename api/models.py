"""What the API takes and gives, declared once. pydantic validates every request against these
models, the OpenAPI document (`api/openapi.py`) is generated from them, and a validation error
names the parameter or field at fault (`api/problems.py`).

Parameters of an operation, path and query alike, are one `Params` model (a path segment is
marked `IN_PATH`); request bodies are models that forbid unknown fields; answers are models
whose every field is always present, so an answer that drifts from its document fails the tests.
"""

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    WithJsonSchema,
    model_validator,
)

TEXT_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"
"""Free-form names (pools, sources, cursors): no control characters, which PostgreSQL text
cannot hold (NUL) or which only make trouble in logs."""
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
SYMBOL_PATTERN = r"^[A-Za-z0-9]{1,16}$"
ALGORITHM_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,31}$"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9\-]{0,127}$"
STEP_PATTERN = r"^([1-9][0-9]{0,8})([smhd]?)$"
MAX_HASHRATE_HS = 1e21
MAX_POWER_W = 1e9
MAX_POWER_COST = 1e6
MAX_LIMIT = 1000
MAX_LIST = 256
Strategy = Literal["max_usd", "max_coin", "fixed"]
HardwareKind = Literal["asic", "gpu", "cpu"]
BlockStatus = Literal["pending", "accepted", "rejected", "orphaned"]


class _InPath:
    """Field metadata: the parameter is a segment of the URL path (`Annotated[str, IN_PATH]`),
    not a query parameter."""


IN_PATH = _InPath()

Text = Annotated[str, Field(pattern=TEXT_PATTERN)]
ProfileName = Annotated[str, Field(pattern=NAME_PATTERN)]
Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN), AfterValidator(str.upper)]
"""A coin symbol, matched in upper case whatever case it is given in."""
Algorithm = Annotated[str, Field(pattern=ALGORITHM_PATTERN)]
Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]


def _true_or_false(value: object) -> object:
    # pydantic reads "yes", "on" and "1" as true too: a query string says true or false, as
    # the document does.
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError(f"must be true or false, got {value!r}")
        return value == "true"
    return value


QueryBool = Annotated[bool, BeforeValidator(_true_or_false)]


def _rfc3339(value: object) -> object:
    # pydantic also reads a number of seconds as a date-time: "0" is no RFC 3339 date-time.
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"must be an RFC 3339 date-time such as 2026-01-01T00:00:00Z, got {value!r}"
            ) from None
    return value


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 is in year 0 in UTC, which Python cannot hold: as the bound
        # of a range it means what the earliest (or latest) instant Python can hold means.
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_utc)]
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _step(value: object) -> object:
    if isinstance(value, str):
        match = re.fullmatch(STEP_PATTERN, value)
        if match is None:
            raise ValueError(f"must be a positive number of seconds or look like 5m, 1h, 1d, got {value!r}")
        return timedelta(seconds=int(match[1]) * _UNIT_S[match[2]])
    return value


Step = Annotated[
    timedelta, BeforeValidator(_step), WithJsonSchema({"type": "string", "pattern": STEP_PATTERN})
]
"""A bucket width: seconds, or a number with unit s, m, h or d ("300", "5m", "1h")."""


# --- parameters ----------------------------------------------------------------------------------


class Params(BaseModel):
    """An operation's path and query parameters. Unknown ones are refused: a misspelt filter must
    not silently return everything."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class NoParams(Params):
    pass


class AlgorithmFilter(Params):
    algorithm: Algorithm | None = None


class CoinParams(Params):
    symbol: Annotated[Symbol, IN_PATH]
    algorithm: Algorithm = "scrypt"


class HistoryRange(Params):
    from_: Timestamp | None = Field(
        None, alias="from", description="start, inclusive; default: a day before to"
    )
    to: Timestamp | None = Field(None, description="end, exclusive; default: now")
    step: Step | None = Field(
        None,
        description="bucket width: seconds or a number with unit s, m, h, d (5m, 1h); default: about 500 "
        "buckets; at most 10000 buckets",
    )


class CoinHistoryParams(CoinParams, HistoryRange):
    source: Text = Field(
        "consensus", description="whose figures: consensus (the reconciled ones) or one source's name"
    )


class PoolsParams(Params):
    coin: Symbol | None = Field(None, description="coin symbol")
    algorithm: Algorithm | None = None


class PoolParams(Params):
    name: Annotated[Text, IN_PATH]
    coin: Symbol | None = Field(
        None, description="the pool's coin, needed when pools of several coins share the name"
    )


class PoolHistoryParams(PoolParams, HistoryRange):
    pass


class HardwareListParams(Params):
    algorithm: Algorithm | None = None
    kind: HardwareKind | None = None


class HardwareParams(Params):
    slug: Annotated[Slug, IN_PATH]


class ProfitabilityParams(Params):
    algorithm: Algorithm = "scrypt"
    hashrate: float | None = Field(
        None,
        gt=0,
        le=MAX_HASHRATE_HS,
        description="H/s; default: the hardware's, else the aggregator's reference hashrate",
    )
    watts: float | None = Field(None, ge=0, le=MAX_POWER_W, description="default: the hardware's, else 0")
    power_cost: float = Field(0.0, ge=0, le=MAX_POWER_COST, description="USD per kWh")
    hardware: Slug | None = Field(
        None,
        description="a device's slug: its hashrate and power, where hashrate and watts do not say "
        "otherwise (an undervolted device: hardware=antminer-l7&watts=3000)",
    )
    include_solo: QueryBool = Field(True, description="also list solo mining on each coin's daemon")


class ProfileParams(Params):
    name: Annotated[ProfileName, IN_PATH]


class DecisionParams(Params):
    profile: Annotated[ProfileName, IN_PATH]


class Page(Params):
    limit: int = Field(100, ge=1, le=MAX_LIMIT)


class WorkersParams(Page):
    profile: ProfileName | None = None
    after: Text | None = Field(
        None, description="page: workers named after this (the previous page's next_after)"
    )


class Window(Page):
    from_: Timestamp | None = Field(None, alias="from", description="start, inclusive")
    to: Timestamp | None = Field(None, description="end, exclusive")
    before: int | None = Field(
        None,
        ge=1,
        le=2**63 - 1,
        description="page: items with an id below this (the previous page's next_before)",
    )


class BlocksParams(Window):
    coin: Symbol | None = Field(None, description="coin symbol")
    status: BlockStatus | None = None


class SwitchEventsParams(Window):
    profile: ProfileName | None = None


# --- profile bodies ------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Hardware(_Body):
    algorithm: Algorithm = "scrypt"
    hashrate_hs: float | None = Field(
        None, gt=0, le=MAX_HASHRATE_HS, description="default: the aggregator's reference hashrate"
    )
    power_w: float = Field(0.0, ge=0, le=MAX_POWER_W)


class MaxUsdParams(_Hardware):
    include_solo: bool = Field(False, description="also weigh solo mining on the coins' own daemons")


class MaxCoinParams(MaxUsdParams):
    coin: Symbol = Field(description="the coin to stay on")


class FixedParams(_Hardware):
    """A fixed profile pins one coin and pool, so there is nothing to weigh solo mining against:
    it takes no include_solo (pool null is solo mining)."""

    coin: Symbol
    pool: Text | None = Field(description="the pool pinned; null: solo mining on the coin's daemon")


class ProfileInput(_Body):
    """What every strategy's profile has; PUT takes it as the whole profile (a name, if given, must
    be the one in the URL: profiles are not renamed)."""

    name: ProfileName | None = Field(None, description="PUT: the name in the URL, if given")
    allow_coins: list[Symbol] = Field(
        default_factory=list, max_length=MAX_LIST, description="empty: every coin not denied"
    )
    deny_coins: list[Symbol] = Field(default_factory=list, max_length=MAX_LIST)
    allow_pools: list[Text] = Field(default_factory=list, max_length=MAX_LIST)
    deny_pools: list[Text] = Field(default_factory=list, max_length=MAX_LIST)
    max_fee_pct: float | None = Field(None, ge=0, le=100)
    min_pool_hashrate: float | None = Field(None, ge=0, le=MAX_HASHRATE_HS)
    power_cost_kwh: float | None = Field(None, ge=0, le=MAX_POWER_COST, description="USD per kWh")

    @model_validator(mode="before")
    @classmethod
    def _params_default(cls, data: Any) -> Any:
        # With no params at all, the error names the one the strategy needs (params.coin).
        if isinstance(data, dict) and "params" not in data:
            return {**data, "params": {}}
        return data


class MaxUsdInput(ProfileInput):
    strategy: Literal["max_usd"]
    params: MaxUsdParams = Field(default_factory=MaxUsdParams)  # the one strategy needing none


class MaxCoinInput(ProfileInput):
    strategy: Literal["max_coin"]
    params: MaxCoinParams


class FixedInput(ProfileInput):
    strategy: Literal["fixed"]
    params: FixedParams


# POST names the new profile in its body.
class NewMaxUsd(MaxUsdInput):
    name: ProfileName


class NewMaxCoin(MaxCoinInput):
    name: ProfileName


class NewFixed(FixedInput):
    name: ProfileName


ProfileReplace = Annotated[MaxUsdInput | MaxCoinInput | FixedInput, Discriminator("strategy")]
ProfileCreate = Annotated[NewMaxUsd | NewMaxCoin | NewFixed, Discriminator("strategy")]


# --- answers -------------------------------------------------------------------------------------


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InvalidParam(Answer):
    name: str
    reason: str


class ProblemDetails(Answer):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    invalid_params: list[InvalidParam] = Field(
        default_factory=list, alias="invalid-params", description="the parameters or fields at fault"
    )


class Health(Answer):
    status: Literal["ok"]


class DataAge(Answer):
    data_as_of: datetime | None
    data_age_s: float | None
    stale: bool


class Ready(Answer):
    status: Literal["ready"]
    database: Literal["ok"]
    last_pass_s: float
    data: dict[str, DataAge] = Field(description="per algorithm")


class Coin(Answer):
    symbol: str
    algorithm: str
    name: str
    price_usd: float | None
    difficulty: float | None
    block_reward: float | None
    block_time_s: float | None
    network_hashrate_hs: float | None
    height: int | None
    stale: bool
    updated_at: datetime | None
    sources: dict[str, Any] = Field(description="which sources supplied each field, and when")


class CoinList(Answer):
    items: list[Coin]


class CoinHistoryPoint(Answer):
    ts: datetime
    price_usd: float | None
    difficulty: float | None
    block_reward: float | None
    network_hashrate_hs: float | None
    height: int | None
    samples: int


class _Range(Answer):
    from_: datetime = Field(alias="from")
    to: datetime
    step_s: float


class CoinHistory(_Range):
    symbol: str
    algorithm: str
    source: str
    points: list[CoinHistoryPoint]


class Pool(Answer):
    name: str
    coin: str
    algorithm: str
    url: str | None
    endpoints: list[dict[str, Any]] = Field(
        description='Stratum endpoints, e.g. [{"url": "stratum+tcp://host:3333"}]'
    )
    fee_pct: float | None
    payout_scheme: str | None
    hashrate_hs: float | None
    miners: int | None
    merged_coins: list[str]
    source: str | None
    stale: bool
    updated_at: datetime | None


class PoolList(Answer):
    items: list[Pool]


class PoolHistoryPoint(Answer):
    ts: datetime
    hashrate_hs: float | None
    miners: float | None
    fee_pct: float | None
    samples: int


class PoolHistory(_Range):
    name: str
    coin: str
    points: list[PoolHistoryPoint]


class HardwareMining(Answer):
    algorithm: str
    hashrate_hs: float
    power_w: float | None
    joules_per_mh: float | None
    source: str | None
    stale: bool
    updated_at: datetime


class Hardware(Answer):
    slug: str | None
    name: str
    vendor: str | None
    kind: HardwareKind
    mining: list[HardwareMining]


class HardwareList(Answer):
    items: list[Hardware]


class Payout(Answer):
    coin: str
    coins_per_day: float
    usd_per_day: float | None


class Earning(Answer):
    coin: str
    pool: str | None = Field(description="null: solo mining on the coin's own daemon")
    stratum_url: str | None
    endpoints: list[str]
    fee_pct: float | None
    pool_hashrate_hs: float | None
    hashrate_hs: float | None
    coins_per_day: float | None = Field(description="of the coin mined, before the pool fee")
    payouts: list[Payout] = Field(
        description="every coin paid: a merged-mining pool pays several for the same hashes"
    )
    missing: list[str] = Field(description="coins paid without fresh data, left out of the sums")
    usd_per_day: float | None = Field(description="gross: every coin paid, before fee and power")
    usd_per_day_after_fee: float | None
    power_usd_per_day: float | None
    usd_per_day_net: float | None = Field(description="after fee and power; negative when losing")


class RankedEarning(Earning):
    rank: int = Field(ge=1)


class Profitability(Answer):
    algorithm: str
    hashrate_hs: float | None
    power_w: float
    power_cost_kwh: float
    power_usd_per_day: float
    hardware: str | None
    data_as_of: datetime | None
    data_age_s: float | None
    stale: bool
    items: list[RankedEarning]


class StoredProfile(Answer):
    name: str
    strategy: Strategy
    params: MaxUsdParams | MaxCoinParams | FixedParams = Field(description="only what is set")
    allow_coins: list[str]
    deny_coins: list[str]
    allow_pools: list[str]
    deny_pools: list[str]
    max_fee_pct: float | None
    min_pool_hashrate: float | None
    power_cost_kwh: float | None
    updated_at: datetime | None


class ProfileList(Answer):
    items: list[StoredProfile]


class Decision(Answer):
    profile: str
    strategy: Strategy
    algorithm: str
    hashrate_hs: float | None
    choice: Earning | None = Field(description="what to mine now; null when nothing could ever be chosen")
    since: datetime | None
    held_s: float | None
    expected_usd_per_day_net: float | None
    runner_up: Earning | None
    margin_usd_per_day: float | None
    margin_pct: float | None
    stale: bool = Field(description="the data is too old to act on: the choice is kept")
    data_as_of: datetime | None
    data_age_s: float | None
    max_data_age_s: float
    reason: str
    evaluated_at: datetime


class DecisionList(Answer):
    items: list[Decision]


ProxyHost = Annotated[str | None, Field(description=(
    "the proxy host that wrote the row, or judged the worker's latest share ([proxy] host_name): several "
    "hosts behind one load balancer share one database; null in rows written before migration 0011"))]


class Worker(Answer):
    name: str
    profile: str
    accepted: int
    rejected: int
    stale: int
    hashrate_hs: float
    last_share_at: datetime | None
    last_seen: datetime | None
    created_at: datetime
    proxy_host: ProxyHost


class WorkerList(Answer):
    items: list[Worker]
    next_after: str | None


class Block(Answer):
    id: int
    coin: str
    height: int
    hash: str
    worker: str | None
    upstream: str | None
    reward: float | None
    status: BlockStatus
    reason: str | None
    found_at: datetime
    proxy_host: ProxyHost


class BlockList(Answer):
    items: list[Block]
    next_before: int | None


class SwitchEvent(Answer):
    id: int
    ts: datetime
    profile: str
    worker_count: int
    from_upstream: str | None
    to_upstream: str
    reason: str | None
    expected_gain_pct: float | None
    proxy_host: ProxyHost


class SwitchEventList(Answer):
    items: list[SwitchEvent]
    next_before: int | None


# --- ASICs (the fleet poller, `qscrypt fleet`) ---------------------------------------------------

DEVICE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"
HOST_PATTERN = r"^[A-Za-z0-9._:\-\[\]%]{1,255}$"
"""A host name, an IPv4 address or an IPv6 one (bracketed or not, with a zone)."""
LABEL_PATTERN = r"^[^\x00-\x1f\x7f]{0,128}$"
RateUnit = Literal["auto", "H", "kH", "MH", "GH", "TH"]
DeviceName = Annotated[str, Field(pattern=DEVICE_PATTERN)]


def _whole(value: object) -> object:
    # JSON Schema's integer is any number with no fraction: 4028.0 is an integer there.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Port = Annotated[int, Field(ge=1, le=65535), BeforeValidator(_whole)]


class DeviceParams(Params):
    name: Annotated[DeviceName, IN_PATH]


class DeviceInput(_Body):
    """A device to poll over the cgminer API (PUT: the whole device)."""

    host: str = Field(pattern=HOST_PATTERN, description="address of its cgminer API")
    port: Port = 4028
    model: str = Field("", pattern=LABEL_PATTERN, description="hint for firmwares that do not say")
    worker: str = Field(
        "", pattern=LABEL_PATTERN, description="the worker name it mines as on the proxy"
    )
    rate_unit: RateUnit = Field(
        "auto", description="what its rate fields really are; auto checks them against its hash counter"
    )


class DeviceStatus(Answer):
    polled_at: datetime
    ok: bool = Field(description="the last poll gave a reading")
    error: str | None = Field(description="why the last poll failed")
    failures: int = Field(description="failed polls in a row")


class DeviceComparison(Answer):
    window_s: float
    device_hashrate_hs: float | None = Field(description="the device's own, over the window")
    proxy_hashrate_hs: float | None = Field(description="from its worker's accepted shares, same window")
    shares: int | None
    disagreement: float | None = Field(description="(device - proxy) / device")


class AsicChain(Answer):
    index: int
    hashrate_hs: float | None
    temp_board_c: float | None
    temp_chip_c: float | None
    hw_errors: int | None
    chips: int | None
    chips_bad: int | None
    frequency_mhz: float | None


class AsicPool(Answer):
    index: int
    url: str
    user: str
    status: str
    active: bool
    accepted: int | None
    rejected: int | None
    stale: int | None
    difficulty_accepted: float | None
    difficulty_rejected: float | None


class AsicReading(Answer):
    read_at: datetime
    family: str = Field(description="cgminer, bmminer or bfgminer")
    firmware: str
    model: str
    elapsed_s: float | None
    hashrate_hs: float | None
    hashrate_avg_hs: float | None
    total_hashes: float | None
    hw_errors: int | None
    accepted: int | None
    rejected: int | None
    stale: int | None
    difficulty_accepted: float | None
    difficulty_rejected: float | None
    temp_max_c: float | None
    fans_rpm: list[int]
    chips_bad: int | None
    chains: list[AsicChain]
    pools: list[AsicPool]
    rate_unit: str = Field(description="what the device's rate fields were read as")
    problems: list[str] = Field(description="fields missing or unreadable in its answers")


class Device(Answer):
    name: str
    host: str
    port: int
    model: str
    worker: str
    rate_unit: RateUnit
    source: Literal["config", "api"] = Field(description="config: change it in the config file")
    created_at: datetime
    updated_at: datetime
    status: DeviceStatus | None = Field(description="null: not polled yet")
    reading: AsicReading | None = Field(description="the last good reading (kept while polls fail)")
    comparison: DeviceComparison | None


class DeviceSummary(Answer):
    name: str
    host: str
    port: int
    model: str
    worker: str
    source: Literal["config", "api"]
    ok: bool | None = Field(description="null: not polled yet")
    polled_at: datetime | None
    error: str | None
    hashrate_hs: float | None
    temp_max_c: float | None
    disagreement: float | None


class DeviceList(Answer):
    items: list[DeviceSummary]

# --- dashboard: rollups, accounts, bans ----------------------------------------------------------

SeriesWindow = Literal["1h", "24h", "7d"]
BanKind = Literal["worker", "ip"]


class DashboardParams(Params):
    poll: int | None = Field(None, ge=1, le=3600, description="seconds between refreshes; default 10")


class DashboardFileParams(Params):
    file: Annotated[Literal["app.js", "chart.js", "style.css"], IN_PATH]


class HashrateParams(Params):
    window: SeriesWindow = Field(
        "24h", description="1h in 5-minute steps, 24h in 15-minute steps, 7d in 2-hour steps"
    )


class AccountParams(Params):
    account: Annotated[Text, IN_PATH] = Field(
        description="a user name or payout address: the part of worker names before the first dot"
    )


class AccountWorkersParams(AccountParams, Page):
    after: Text | None = Field(
        None, description="page: workers named after this (the previous page's next_after)"
    )


class AccountHashrateParams(AccountParams, HashrateParams):
    pass


class BansParams(Page):
    after: int | None = Field(
        None,
        ge=0,
        le=2**63 - 1,
        description="page: bans with an id above this (the previous page's next_after)",
    )


class BanParams(Params):
    id: Annotated[int, IN_PATH] = Field(ge=1, le=2**63 - 1)


class _BanBody(_Body):
    reason: Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]{0,256}$")] = ""
    expires_in_s: float | None = Field(None, gt=0, le=10 * 365 * 86400, description="default: until lifted")


class WorkerBan(_BanBody):
    kind: Literal["worker"]
    value: Text = Field(description="a worker name; a name without a dot bans the whole account")


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


class IpBan(_BanBody):
    kind: Literal["ip"]
    value: Annotated[
        str,
        Field(max_length=64),
        AfterValidator(_ip),
        WithJsonSchema({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
    ] = Field(description="an IPv4 or IPv6 address")


BanCreate = Annotated[WorkerBan | IpBan, Discriminator("kind")]


class HashratePoint(Answer):
    ts: datetime = Field(description="start of the step")
    hashrate_hs: float = Field(description="accepted share difficulty x 65536 / step seconds")
    accepted: int
    rejected: int
    stale: int


class HashrateSeries(Answer):
    window: SeriesWindow
    step_s: float
    points: list[HashratePoint] = Field(description="steps with shares, oldest first")


class ShareCount(Answer):
    result: Literal["accepted", "rejected", "stale"]
    reason: str = Field(description="empty for accepted shares")
    shares: int
    difficulty: float


class ProfileNow(Answer):
    profile: str
    coin: str
    pool: str | None
    stratum_url: str | None
    reason: str
    decided_at: datetime


class UpstreamEvent(Answer):
    id: int
    ts: datetime
    upstream: str
    event: str = Field(description="up, down (state changes), failover, failback (moves of miners)")
    detail: dict[str, Any]


class Overview(Answer):
    hashrate_1h_hs: float
    hashrate_24h_hs: float
    online_window_s: float
    workers_online: int = Field(description="workers with a share in the last online_window_s")
    miners_online: int = Field(description="accounts with a worker online")
    shares_24h: list[ShareCount]
    blocks: dict[str, int] = Field(description="blocks found, by status")
    profiles: list[ProfileNow] = Field(description="the coin and pool each profile is on now")
    upstreams: list[UpstreamEvent] = Field(description="each upstream's latest event: its state")
    switches: list[SwitchEvent] = Field(description="the latest profit switches")
    failovers: list[UpstreamEvent] = Field(description="the latest failovers and failbacks")


class AccountWorker(Answer):
    name: str
    profile: str
    hashrate_hs: float = Field(description="over the last hour")
    last_share_at: datetime | None
    accepted: int = Field(description="shares in the last 24 h")
    rejected: int
    stale: int
    rejected_by_reason: dict[str, int] = Field(
        description="rejected and stale shares of the last 24 h by reason"
    )


class AccountWorkerList(Answer):
    account: str
    items: list[AccountWorker]
    next_after: str | None


class WorkerSeries(Answer):
    worker: str
    points: list[HashratePoint]


class AccountHashrate(Answer):
    account: str
    window: SeriesWindow
    step_s: float
    total: list[HashratePoint]
    workers: list[WorkerSeries]


class Ban(Answer):
    id: int
    kind: BanKind
    value: str
    reason: str
    created_at: datetime
    expires_at: datetime | None


class BanList(Answer):
    items: list[Ban]
    next_after: int | None
