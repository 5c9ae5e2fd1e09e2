"""Reading stored results back."""

from __future__ import annotations

import os
import pathlib

from multimeter.result import Result
from multimeter.storages.file import FileFormat, JsonFormat, LineFormat, ResultFileError

_FORMATS: dict[str, FileFormat] = {".json": JsonFormat(), ".line": LineFormat()}


def load_result(path: str | os.PathLike[str]) -> Result:
    """Load a result file written by :class:`~multimeter.FileStorage`.

    The format is chosen by the extension: ``.json`` or ``.line``.

    Raises:
        ValueError: for another extension.
        ResultFileError: (a ``ValueError``) for a file that is not a result of its
            format: damaged, truncated, not UTF-8, or data of the wrong shape. The
            message names the file and what is wrong.
        OSError: when the file cannot be opened or read.
    """
    path = pathlib.Path(path)
    file_format = _FORMATS.get(path.suffix)
    if file_format is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r}: allowed extensions are .json and .line"
        )
    with open(path, "rb") as stream:
        try:
            return file_format.load_result_from_stream(stream)
        except ResultFileError as error:
            raise ResultFileError(error.reason, str(path)) from error
