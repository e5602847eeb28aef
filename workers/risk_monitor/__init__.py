"""The manipulation detector: ``tradegraph risk-monitor`` (README "Manipulation detection")."""
