"""Annotated field types shared by job configs."""

from __future__ import annotations

import glob
import os
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo

from recsys.config.paths import is_uri


def _check_input_path(value: str, info: ValidationInfo) -> str:
    """A local file, directory or glob must exist; URIs (s3://, gs://) are checked when read.

    Validation context ``{"check_paths": False}`` skips the check (the pipeline validates stage
    configs before upstream stages have written their outputs).
    """
    if (info.context or {}).get("check_paths", True) is False or is_uri(value):
        return value
    if any(ch in value for ch in "*?["):
        if not glob.glob(value, recursive=True):
            raise ValueError(f"no file matches the glob {value!r}; fix the pattern or the data root")
        return value
    if not os.path.exists(value):
        raise ValueError(
            f"file not found: {value!r} (cwd {os.getcwd()}); give an existing path, a glob, or an "
            "s3:// / gs:// URI (paths under ${RECSYS_DATA_ROOT} follow that variable)"
        )
    return value


InputPath = Annotated[str, AfterValidator(_check_input_path)]
"""A path the job reads: local file/dir/glob (checked to exist at validation) or a URI."""
