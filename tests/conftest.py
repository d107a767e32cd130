"""pytest settings for everything under tests/.

hypothesis runs the same examples on every run (the "repeatable" profile: derandomize), so CI
tests exactly what the last local run tested, and a red run means a regression, never an
unlucky draw.  To hunt for new counterexamples, run with ``HYPOTHESIS_PROFILE=explore``
(random examples; 1000 for tests that do not set their own count); a counterexample it finds
belongs in a test of its own.
"""

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
