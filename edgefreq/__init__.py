"""edgefreq: frequency-decoupled anomaly detection for inspection lines, from training to the camera loop."""

__version__ = "0.1.0"
