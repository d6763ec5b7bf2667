"""Exit codes, Terraform's where Terraform has one (README: "Exit codes")."""

EXIT_OK = 0  # success; no changes; in sync
EXIT_ERROR = 1  # an error, a failed action, something that could not be observed
EXIT_CHANGES = 2  # changes present (plan --detailed-exitcode), drift
EXIT_DEGRADED = 3  # apply done, but a host reported failed units
EXIT_ROLLED_BACK = 4  # a host failed activation or health checks and was rolled back
