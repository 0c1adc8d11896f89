import sys

from pos.cli import main

sys.exit(main())
