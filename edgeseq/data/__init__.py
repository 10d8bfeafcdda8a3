"""Where samples enter edgeseq on the host: readers for public data sets and users' recordings."""
