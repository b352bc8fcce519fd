"""Upstreams: where work comes from and shares go (Stratum pools, coin daemons)."""
