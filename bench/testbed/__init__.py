"""The embedded testbed `tinyshift`: real handwritten digits rendered in seven styles, and the pretraining of the
tiny CLIP that ships with it. Below the dataset adapters (which serve it) and above the models (which it trains)."""
