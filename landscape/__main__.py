"""``python -m landscape`` (and ``torchrun -m landscape``) runs the CLI."""
import sys

from .cli import main

sys.exit(main())
