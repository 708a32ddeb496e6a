import sys

from edgefreq.cli import main

sys.exit(main())
