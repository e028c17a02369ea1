import sys

from adamrepro.cli import main

sys.exit(main())
