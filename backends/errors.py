"""The one exception type that means "the user asked for something we cannot do".

Front doors (``train.py``, ``gui.py``) print its message as a single line and
exit with status 2; anything else is a bug and keeps its traceback.
"""


class XpnetError(Exception):
    """Bad input or an unusable setting. The message names the problem and the fix."""
