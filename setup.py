"""The one compiled part: sha256d over OpenSSL (why: mining/_sha256d.c). Everything else is in
pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mining._sha256d", ["mining/_sha256d.c"], libraries=["crypto"])])
