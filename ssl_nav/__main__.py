import sys

from ssl_nav.cli import main

sys.exit(main())
