"""unmask.eval — benchmarks, pass@k, per-sample JSONL and reports (scoring goes through ``rewards``)."""
