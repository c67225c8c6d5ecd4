"""What every channel adapter shares: PII masking, language detection, ids, and the accept-then-ack path."""
