"""What a run records and what is made of it: load, history, checker, report."""
