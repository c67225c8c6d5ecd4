"""The phone transcripts adapter: call events and ASR segments in, InboundMessages out (docs/phone-api.md)."""
