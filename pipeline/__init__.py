"""News-event archive to analytical tables: discover, parse, normalize, validate, publish."""

import os

# Arrow's default allocator (mimalloc) keeps freed memory for reuse: after a million-file
# listing the process held ~500 MB it never needed again. The system allocator hands large
# buffers back on free; with it a 1M-event build peaked at 1.7 GB instead of 2.0 GB (process
# tree, BENCHMARKS.md). Set before pyarrow is first imported; spawned workers inherit it.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

__version__ = "0.1.0"
