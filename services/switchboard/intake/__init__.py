"""What every channel adapter shares: language detection, ids, and the accept-then-ack path (PII masking is
runtime.pii, which every service may import)."""
