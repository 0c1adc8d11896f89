import sys

from pos.cli.main import main

sys.exit(main())
