"""The one exception type that means "the user asked for something we cannot do".

Front doors (``train.py``, ``gui.py``) print its message as a single line and
exit with status 2; anything else is a bug and keeps its traceback.
"""


class XpnetError(Exception):
    """Bad input or an unusable setting. The message names the problem and the fix."""


def run_front_door(main, argv, prog, interrupted="interrupted"):
    """``main(argv)`` under the house rule, for ``sys.exit``.

    An XpnetError becomes one line on stderr and exit status 2; Ctrl-C one
    line and 130 (``interrupted=None``: silently, as a closed window is).
    Any other exception is a bug and keeps its traceback.
    """
    import sys

    try:
        return main(argv)
    except XpnetError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if interrupted:
            print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
