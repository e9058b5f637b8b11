"""The workflow engine: definitions, durable dispatch, completion and recovery."""
