"""Configuration: the example file loads; unknown keys and bad values name the key."""

from pathlib import Path

import pytest

from cli.config import load_config
from qscrypt.settings import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "qscrypt.example.toml"
ENV = {"POOL_A_PASSWORD": "secret", "LITECOIN_RPC_PASSWORD": "rpcsecret", "DOGECOIN_RPC_PASSWORD": "doge"}


def test_example_config_loads_with_secrets_from_environment() -> None:
    config = load_config(EXAMPLE, ENV)
    assert config.proxy.listen.port == 3333
    pool, daemon = config.proxy.upstreams
    assert pool.password == "secret" and daemon.rpc_password == "rpcsecret"
    assert daemon.kind == "daemon" and daemon.network == "main"


def test_example_sections_of_the_api_and_aggregator_load() -> None:
    from aggregator.cli import load_aggregator_config
    from api.config import ApiConfig
    from qscrypt.settings import load_section

    config = load_config(EXAMPLE, ENV)
    assert load_section(ApiConfig, config.api, "api", ENV).port == 8080
    assert load_aggregator_config(config.aggregator, ENV).reference_hashrate_hs == 1e9
    assert config.proxy.switching.api_url == "http://127.0.0.1:8080"


def test_missing_environment_secret_names_key_and_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(EXAMPLE, {"POOL_A_PASSWORD": "x"})
    assert "proxy.upstreams[1].rpc_password" in str(err.value)
    assert "LITECOIN_RPC_PASSWORD" in str(err.value)


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ("[proxy]\nmax_conections = 5\n", "proxy.max_conections", "unknown key"),
        ("[proxy.limits]\nmax_connections = \"many\"\n", "proxy.limits.max_connections", "integer"),
        ("[proxy.limits]\nmax_connections = 0\n", "proxy.limits.max_connections", "positive"),
        ("[logging]\nlevel = \"loud\"\n", "logging.level", "one of"),
        ("[proxy.listen]\nport = 70000\n", "proxy.listen.port", "TCP port"),
        ("[[proxy.upstreams]]\nname = \"a\"\nurl = \"http://x:1\"\nuser = \"u\"\n",
         "proxy.upstreams[a].url", "stratum+tcp"),
        ("[[proxy.upstreams]]\nurl = \"stratum+tcp://x:1\"\n", "proxy.upstreams[0].name", "required"),
        ("[proxy.vardiff]\nminimum = 5.0\ninitial = 1.0\n", "proxy.vardiff", "minimum <= initial"),
        ("[proxy]\nextranonce_prefix_size = 9\n", "proxy.extranonce_prefix_size", "1..4"),
        ("[proxy]\nworkers = 0\n", "proxy.workers", "1..256"),
        ("[proxy]\nworkers = 300\n", "proxy.workers", "1..256"),
        ("not toml at all [", "<file>", "not valid TOML"),
        ("[proxy]\nworkers = 1979-05-27\n", "proxy.workers", "TOML date"),
        ("[proxy]\nworkers = 1.5\n", "proxy.workers", "must be an integer, got 1.5"),
        ("[proxy]\nupstreams = [5]\n", "proxy.upstreams[0]", "must be a table, got 5"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    path = tmp_path / "q.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert err.value.key == key
    assert problem in str(err.value)


def test_a_secret_is_read_from_the_environment_once_and_paths_expand_home(tmp_path: Path) -> None:
    from aggregator.cli import load_aggregator_config

    path = tmp_path / "q.toml"
    path.write_text('[proxy]\nspill_dir = "~/${SPILL}"\n[aggregator.coingecko]\napi_key = "${KEY}"\n')
    env = {"SPILL": "spill", "KEY": "k${NOT_A_REFERENCE}"}
    config = load_config(path, env)
    assert config.proxy.spill_dir == Path.home() / "spill"
    # The aggregator's table is expanded by its own loader, not before: a secret may contain "${".
    assert load_aggregator_config(config.aggregator, env).coingecko.api_key == "k${NOT_A_REFERENCE}"


def test_database_dsn_from_environment(tmp_path: Path) -> None:
    config = load_config(None, {"QSCRYPT_DATABASE_DSN": "postgresql://u@h/db"})
    assert config.database.dsn == "postgresql://u@h/db"


def test_example_aux_chain_loads() -> None:
    daemon = load_config(EXAMPLE, ENV).proxy.upstreams[1]
    (aux,) = daemon.aux
    assert (aux.name, aux.coin, aux.network, aux.rpc_password) == ("my-dogecoind", "DOGE", "main", "doge")


_SOLO = ('[[proxy.upstreams]]\nname = "solo"\nkind = "daemon"\nrpc_url = "http://x:1"\nrpc_user = "u"\n'
         'payout_address = "ltc1q"\n')
_DOGE = '[[proxy.upstreams.aux]]\nname = "doge"\nrpc_url = "http://x:2"\nrpc_user = "u"\n'
_BURN = 'payout_address = "D596YFweJQuHY1BbjazZYmAbt8jJPbKehC"\n'


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        (_SOLO + _DOGE + 'payout_address = "LKh8pxsZwbSEz9PUbMUx1NX26eWsPprcsz"\n',
         "proxy.upstreams[solo].aux[doge].payout_address", "cannot be paid on dogecoin mainnet"),
        (_SOLO + _DOGE, "proxy.upstreams[solo].aux[doge].payout_address", "required"),
        (_SOLO + _DOGE + _BURN + 'coin = "LTC"\n', "proxy.upstreams[solo].aux[doge].coin", "no merged-mined"),
        (_SOLO + _DOGE + _BURN + 'network = "regtest"\n', "proxy.upstreams[solo].aux[doge].payout_address",
         "cannot be paid on dogecoin regtest"),
        (_SOLO + _DOGE + _BURN + _DOGE.replace('"doge"', '"doge2"') + _BURN,
         "proxy.upstreams[solo].aux[doge2].coin", "chain id 98"),
        (_SOLO + _DOGE + _BURN + 'poll_s = 0.0\n', "proxy.upstreams[solo].aux[doge].poll_s", "(0, 60]"),
        (_SOLO + _DOGE + _BURN + 'pol_s = 1.0\n', "proxy.upstreams[0].aux[0].pol_s", "unknown key"),
        ('[[proxy.upstreams]]\nname = "p"\nurl = "stratum+tcp://x:1"\nuser = "u"\n' + _DOGE + _BURN,
         "proxy.upstreams[p].aux", "daemon upstream"),
    ],
)
def test_bad_aux_chain_names_the_key(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    path = tmp_path / "q.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert err.value.key == key, err.value
    assert problem in str(err.value)
