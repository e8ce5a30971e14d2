"""``python -m cqa_utils`` = ``cqa``."""

import sys

from .cli import main

sys.exit(main())
