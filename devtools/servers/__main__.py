import sys

from devtools.servers.cli import main

sys.exit(main(sys.argv[1:]))
