"""The one exception type for bad user input, shared by `traffic` and `harness`."""


class InputError(Exception):
    """Bad input (a file, a field, a flag, a config value).

    The message must name the offending file/field and read well as a single line: the CLI prints
    it as `joulebench: error: <message>` and exits with status 2, without a traceback.
    """
