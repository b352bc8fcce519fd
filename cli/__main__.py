"""`python -m cli`: the `qscrypt` command."""

import sys

from cli.entry import main

sys.exit(main())
