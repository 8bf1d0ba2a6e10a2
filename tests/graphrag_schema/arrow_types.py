"""How the schema reference and its test name an Arrow type (pyarrow only, so both the
graphrag venv that derives the reference and the test suite can import it)."""

from __future__ import annotations

import pyarrow as pa


def canonical_type(t: pa.DataType) -> str:
    """An Arrow type as a string that ignores what readers do not see: string vs large_string
    (pandas 3 writes large_string), list element names, float widths named plainly."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{canonical_type(t.value_type)}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{canonical_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {canonical_type(f.type)}" for f in t) + ">"
    if pa.types.is_float64(t):
        return "float64"
    if pa.types.is_float32(t):
        return "float32"
    return str(t)
