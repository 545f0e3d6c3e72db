import sys

from stillroom.tui.cli import main

sys.exit(main())
