"""The worker side: one process that owns the image engine, and the supervisor that keeps it alive."""
