"""Test support shipped with curator: storage emulators and a fault-injecting HTTP proxy.

Used by the project's tests and benchmarks; nothing here is imported by the pipeline.
"""
