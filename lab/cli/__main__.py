"""`python -m lab.cli` runs `halab`."""

import sys

from lab.cli.main import main

sys.exit(main())
