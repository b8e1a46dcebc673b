import sys

from hotpatch.cli import main

sys.exit(main())
