"""Reading stored results back."""

from __future__ import annotations

import os
import pathlib

from multimeter.result import Result
from multimeter.storages.file import FileFormat, JsonFormat, LineFormat

_FORMATS: dict[str, FileFormat] = {".json": JsonFormat(), ".line": LineFormat()}


def load_result(path: str | os.PathLike[str]) -> Result:
    """Load a result file written by :class:`~multimeter.FileStorage`.

    The format is chosen by the extension: ``.json`` or ``.line``.

    Raises:
        ValueError: for another extension.
        OSError: when the file cannot be read.
    """
    path = pathlib.Path(path)
    file_format = _FORMATS.get(path.suffix)
    if file_format is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r}: allowed extensions are .json and .line"
        )
    with open(path, "rb") as stream:
        return file_format.load_result_from_stream(stream)
