"""Message codecs, producers and the batched consumer loop shared by assets and services."""
