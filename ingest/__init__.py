"""Sources and the lake: landing raw partitions and loading them into the warehouse."""
