"""The content service: a read-heavy content API behind a Redis cache-aside layer."""
