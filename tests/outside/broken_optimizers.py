"""A user's optimizer module that cannot be imported: its own code fails (a bug), and a
package it needs is not installed. For test_bad_inputs's messages."""

import os

if os.environ.get("BROKEN_OPTIMIZERS") == "needs-a-package":
    import no_such_dependency  # noqa: F401
raise RuntimeError("a bug in the module")
