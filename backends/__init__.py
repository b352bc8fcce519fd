"""Qscrypt's hashing backends: engines (CPU threads, OpenCL) behind one interface, and the built-in miner."""
