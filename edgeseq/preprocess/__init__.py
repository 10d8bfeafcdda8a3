"""Device-side signal processing (numpy only): filters, the streaming QRS detector, beat features."""
