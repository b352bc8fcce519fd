"""The fleet: mining hardware Qscrypt watches but does not run — scrypt ASICs that answer the
cgminer API (cgminer, bmminer, BFGMiner). Polls each registered device, exports its figures as
Prometheus metrics, keeps its last reading in PostgreSQL for the API, and sets the hashrate each
device reports beside the hashrate the proxy measures from its shares.

Imports qscrypt and mining; not proxy, api, aggregator or backends (they meet in PostgreSQL)."""
