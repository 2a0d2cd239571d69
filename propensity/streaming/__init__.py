"""The real-time path: the storefront replayer, the stream processor and its Spark Structured Streaming job."""

# How far behind the watermark a session may fall before it expires (beyond the session gap); the processor's and the
# job's default (the job reads it without importing the processor).
ALLOWED_LATENESS_S = 600.0
