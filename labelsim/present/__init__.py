"""What a person reads: Altair chart builders and the offline HTML report (jax-free)."""
