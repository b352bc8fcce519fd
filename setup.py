"""The one compiled part: mining._hashes, sha256d over OpenSSL and scrypt in SIMD lanes (why:
mining/_hashes.c, mining/_scrypt.c). Everything else is in pyproject.toml.

No -march flags: the AVX2 and AVX-512 scrypt functions carry their own target attributes and are
chosen at run time, so one build runs on any x86-64 (and the scalar code anywhere)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mining._hashes", ["mining/_hashes.c", "mining/_scrypt.c"],
                             depends=["mining/_scrypt.h"], libraries=["crypto"])])
