"""Test and benchmark support shipped with curator: storage emulators and a fault-injecting
HTTP proxy; videos whose frames carry their own index (so a model server can say exactly
which frames it got) and a small local OpenAI-compatible chat-completions server that reads
them; tiny random-weight models.

Used by the project's tests and benchmarks; nothing here is imported by the pipeline.
"""
