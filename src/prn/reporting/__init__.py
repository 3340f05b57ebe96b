"""Paper tables from sweeps: the paper's numbers as data and the aggregator beside them."""
