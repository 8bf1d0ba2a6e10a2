"""PDF extraction speed and memory: pages per second and peak RSS of the PDF reader
(graphrag_flow/stages/load/readers/pdf.py) on a generated text PDF; print JSON.

    .venv/bin/python benchmarks/pdf_extraction.py [--pages 200] [--lines 45]

The PDF is made with reportlab (a running header, a page-number footer and `--lines` lines of
about 90 characters per page, a dense report page), then read in a child process of its own so
that its peak RSS is the reader's: `rss_before_mb` after the imports, `peak_rss_mb` after the
extraction. The extracted-text cache is not involved (the reader is called directly).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB


def extract(path: Path) -> dict:
    from graphrag_flow.config import InputSettings
    from graphrag_flow.stages.load.readers.pdf import read

    data = path.read_bytes()
    before = _rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    extraction = read(data, InputSettings())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "chars": len(extraction.documents[0].text),
            "rss_before_mb": round(before, 1), "peak_rss_mb": round(_rss_mb(), 1)}


def make_pdf(path: Path, pages: int, lines: int) -> None:
    from tests.reader_files import pdf

    words = "the treaty of westphalia ended thirty years of war between the states of europe".split()
    body = [[" ".join(words[(p + i + k) % len(words)] for k in range(16)) + f" {p}.{i}" for i in range(lines)]
            for p in range(pages)]
    path.write_bytes(pdf(body, header="Annual report of the ACME Corporation", footer="Page {page}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--lines", type=int, default=45)
    parser.add_argument("--extract", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.extract:
        print(json.dumps(extract(args.extract)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.pdf"
        make_pdf(path, args.pages, args.lines)
        child = subprocess.run([sys.executable, __file__, "--extract", str(path)], capture_output=True, text=True,
                               check=True)
        result = json.loads(child.stdout)
        size_mb = path.stat().st_size / 1048576
    import pdfminer

    print(json.dumps({
        "benchmark": "pdf_extraction",
        "library": f"pdfminer.six {pdfminer.__version__}",
        "pages": args.pages,
        "lines_per_page": args.lines,
        "file_mb": round(size_mb, 2),
        "pages_per_second": round(args.pages / result["seconds"], 1),
        # what one free core does: the machine may be shared (see the load average)
        "pages_per_cpu_second": round(args.pages / result["cpu_seconds"], 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
        **result,
    }, indent=2))


if __name__ == "__main__":
    main()
