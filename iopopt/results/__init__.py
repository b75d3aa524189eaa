"""Result records (``result.json``, one flat JSON object per job) and atomic writes."""

from .io import display_path, json_safe, write_json_atomic, write_jsonl_atomic, write_text_atomic
from .records import (
    EXTRA_KEYS,
    INSTANCES_FILE,
    RESULT_FILE,
    RESULT_KEYS,
    VERIFY_KEYS,
    base_record,
    error_record,
    per_op_timeline,
    solved_record,
)

__all__ = [
    "EXTRA_KEYS",
    "INSTANCES_FILE",
    "RESULT_FILE",
    "RESULT_KEYS",
    "VERIFY_KEYS",
    "base_record",
    "display_path",
    "error_record",
    "json_safe",
    "per_op_timeline",
    "solved_record",
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_text_atomic",
]
