"""Host-side tasks: each turns records into a bundle and a bundle into figures."""
