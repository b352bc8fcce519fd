"""The `qscrypt` command and the one place that wires the packages together (nothing imports it)."""
