import sys

from prodemb.jobs import main

sys.exit(main())
