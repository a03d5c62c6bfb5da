"""Keep sql_saga's src/2n_temporal_merge_native.sql but drop its LANGUAGE c functions.

They need the Rust library sql_saga_native, which cannot be built offline, and so do their
COMMENTs. The composite type sql_saga.temporal_merge_executor_cache stays (the PL/pgSQL
executor declares a variable of it). With the functions absent, sql_saga uses its PL/pgSQL
executor (to_regproc(...introspect) IS NULL), and the PL/pgSQL planner when
sql_saga.temporal_merge.use_plpgsql_planner = true.

    python3 strip_native.py IN OUT
"""

import re
import sys
from pathlib import Path

NATIVE = ("temporal_merge_plan_native|temporal_merge_executor_introspect"
          "|temporal_merge_native_cache_stats|temporal_merge_native_cache_reset")


def strip(s: str) -> str:
    s = re.sub(r"CREATE OR REPLACE FUNCTION sql_saga\.\w+\((?:[^;]|\n)*?LANGUAGE c VOLATILE\s*\n"
               r"AS 'sql_saga_native', '\w+';\n", "", s)
    s = re.sub(rf"COMMENT ON FUNCTION sql_saga\.({NATIVE}) IS\n'(?:[^']|'')*';\n", "", s)
    if "sql_saga_native" in s.replace("-- The function is implemented in the sql_saga_native", ""):
        sys.exit("strip_native.py: a sql_saga_native function is left")
    return s


if __name__ == "__main__":
    src, dst = sys.argv[1:3]
    Path(dst).write_text(strip(Path(src).read_text()))
