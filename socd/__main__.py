import gc
import sys

# The imports below make ~200,000 objects that live until the end and almost no
# garbage: the collections they would trigger only walk them (~10 % of the start-up of
# `socd replay`, issue 17). See socd.cli.common.no_collection.
gc.disable()
from socd.cli import main  # noqa: E402 - after gc.disable(), on purpose

gc.enable()
sys.exit(main())
