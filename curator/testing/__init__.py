"""Test and benchmark support that ships with curator; nothing here is imported by the pipeline.

- storage emulators (moto S3, gcp-storage-emulator, Azurite) and a fault-injecting HTTP proxy;
- videos whose frames carry their own index (so a model server can say exactly which frames it
  got) and a small local OpenAI-compatible chat-completions server that reads them;
- tiny random-weight models and run manifests with given embeddings.
"""
