"""`switchboard dlq`: operators list, inspect and re-drive the records on the DLQ topic (docs/dlq.md).

`entries` (pure) says which DeadLetters a filter keeps and which can go back to a topic; `render` (pure) prints them
PII-masked; `reader` scans the DLQ topic without a consumer group; `redrive` sends originals back in transactions
with a DeadLetterRedrive mark; `command` is the argparse front of `python -m switchboard dlq`.
"""
