"""The write path: a Celery queue of catalogue updates and the workers that embed and store them."""
