"""``hardneg experiment``: which negatives help on this corpus? One budget, one recipe, a report."""
