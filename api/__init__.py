"""The decision API: market data, profitability and per-profile mining decisions over REST.

`api.app.create_app` builds the aiohttp application; `qscrypt api` runs it (`api.cli`). The
decision rule (`api.decision`) and the strategies (`api.strategies`) are pure functions; the
proxy learns of a changed decision from PostgreSQL (table `decisions`, NOTIFY on channel
`qscrypt_decisions` with the profile name) or from GET /v1/decisions/{profile}.
"""
