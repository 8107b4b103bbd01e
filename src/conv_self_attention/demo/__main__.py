"""Entry point of `python -m conv_self_attention.demo`."""

import sys

from conv_self_attention.demo.cli import main

if __name__ == "__main__":
    sys.exit(main())
