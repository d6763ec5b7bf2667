"""Baremetal hosts: intent, probe, diff; pinned SSH keys and targets."""
