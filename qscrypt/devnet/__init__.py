"""Local development networks: real coin daemons on loopback for tests and solo mining."""
