"""`python -m cli`: the `qscrypt` command."""

import sys

from cli.main import main

sys.exit(main())
