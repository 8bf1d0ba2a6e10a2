"""Everything a run keeps on disk, written so a kill -9 never leaves half a file.

paths.py (`ProjectPaths`: every folder and file of a project), atomic.py (write by rename),
stages.py (stage checkpoints), vectors.py (LanceDB vector tables, each its own checkpoint),
outputs.py (the parquet tables, the manifest, and their verification), generations.py (output/,
output.next/, output.previous/ and the switch between them), project_lock.py (one run per
project), writable.py (the folders a run writes are writable), faults.py (the named kill and
full-disk points tests use).
"""
