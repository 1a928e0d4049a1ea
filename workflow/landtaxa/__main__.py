"""``python -m landtaxa <step> ...``: run one workflow step."""

import sys

from landtaxa.cli import main

sys.exit(main())
