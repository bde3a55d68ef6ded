import sys

from socd.cli import main

sys.exit(main())
