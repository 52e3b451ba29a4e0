"""``python -m seqrec`` is the ``seqrec`` console script."""
import sys

from seqrec.experiment.cli import main

sys.exit(main())
