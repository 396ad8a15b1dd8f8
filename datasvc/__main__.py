import sys

from datasvc.cli import main

sys.exit(main())
