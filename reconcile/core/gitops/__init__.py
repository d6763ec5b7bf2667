"""GitOps: path confinement, git URLs, status, timer units."""
