"""Training the project's own image tower: locked-text contrastive tuning against the packaged MiniLM."""
