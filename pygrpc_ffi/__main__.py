"""``python -m pygrpc_ffi``: the command line."""

import sys

from .cli import main

sys.exit(main())
