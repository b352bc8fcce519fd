"""OpenCL C sources of the hashing kernels (package data, shipped with the wheel)."""
