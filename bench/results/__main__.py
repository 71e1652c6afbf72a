"""`python -m bench.results migrate STORE_DIR`: bring a store's records to the current schema version."""
import sys

from bench.results.schema import main

sys.exit(main())
