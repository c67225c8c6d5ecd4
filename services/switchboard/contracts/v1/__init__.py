"""Generated from proto/switchboard/v1 by scripts/gen_proto.py; do not edit."""
