"""Training data: the public data sets split with a manifest, and the synthetic triage corpora."""
