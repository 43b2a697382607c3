"""Development tooling for airq: the local Kafka broker, the OpenAQ simulator, `make run`'s launcher and the
harness that tests and benchmarks share. Never imported by the worker package `airq_app`."""
