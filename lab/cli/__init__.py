"""`halab`, the command line: `main.py` builds the parser and runs a command; each command group
lives in its own module (`cluster.py`, `record.py`, `chaos.py`, `capacity.py`) and `common.py` holds
what they share."""
