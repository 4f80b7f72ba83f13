"""BIDS on the way in and out: collecting inputs, naming derivatives, publishing them atomically."""
