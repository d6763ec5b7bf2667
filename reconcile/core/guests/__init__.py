"""Imageless guests: the definition and its hash, identity, shares, domain XML, the diff."""
