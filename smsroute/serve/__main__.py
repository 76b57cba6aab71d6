"""``python -m smsroute.serve``: the same as ``smsroute serve``."""

import sys

from smsroute.serve import main

if __name__ == "__main__":  # not when a spawned worker imports this module as __mp_main__
    sys.exit(main())
