"""Speed-versus-quality measurement of artifacts: timing, probes, reports, plots, gates."""
