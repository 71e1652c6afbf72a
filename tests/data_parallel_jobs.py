"""Run several methods one after another in one torchrun job (one process group, one start-up of torch for all):
    python -m torch.distributed.run --nproc_per_node 2 tests/data_parallel_jobs.py STORE_ROOT JOBS_JSON
JOBS_JSON maps method -> its settings; each method's run goes to STORE_ROOT/<method>."""
import json
import sys
from pathlib import Path

from bench.runner import RunRequest, execute, join_process_group

if __name__ == "__main__":
    join_process_group()
    root, jobs = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    for method, settings in jobs.items():
        execute(RunRequest(method=method, out=root / method, settings=settings))
