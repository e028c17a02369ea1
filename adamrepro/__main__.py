import sys

from adamrepro.entry import main

sys.exit(main())
