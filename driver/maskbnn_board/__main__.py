import sys

from maskbnn_board.cli import main

sys.exit(main())
