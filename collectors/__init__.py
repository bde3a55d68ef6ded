"""Input plugins: each collector receives records from one kind of source."""
