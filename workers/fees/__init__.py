"""Background jobs of the fee calculation engine."""
