"""Content moderation: the 13 categories, the embedded classifier, an upstream classifier."""
