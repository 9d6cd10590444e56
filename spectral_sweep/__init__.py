"""spectral-sweep: learning rate as a function of batch size, measured and explained."""
