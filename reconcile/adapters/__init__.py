"""Adapters: the only code that talks to the world (processes, libvirt, Nix, files)."""
