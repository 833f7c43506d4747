"""unmask.eval — benchmark runs (the benchmarks themselves are ``unmask.tasks``), pass@k, per-sample JSONL and
reports (scoring goes through ``rewards``)."""
