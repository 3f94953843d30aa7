"""`python -m funnel ...`: the same front door as the `funnel` command."""
import sys

from funnel.cli.main import main

sys.exit(main())
