"""Ingestion: the OpenAQ poller and the election of the one worker that runs it."""
