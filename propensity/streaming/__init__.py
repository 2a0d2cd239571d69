"""The real-time path: the storefront replayer, the stream processor and its Spark Structured Streaming job."""
