"""The floor a no-op plan is measured against: bare libvirt-python, nothing else.

Lists the domains once, reads the inactive XML of each of the lab's own (`<lab>-` names),
and compares the memory in it with what is wanted; defines nothing. A whole process, like
`reconcile plan`: `python bench/floor.py URI LAB N MEMORY_KIB`. Exits 1 if a domain differs.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

import libvirt


def main() -> int:
    uri, lab, count, memory_kib = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    conn = libvirt.open(uri)
    try:
        ours = [d for d in conn.listAllDomains(0) if d.name().startswith(f"{lab}-")]
        differ = 0
        for dom in ours:
            root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            if root.findtext("memory") != memory_kib:
                differ += 1
    finally:
        conn.close()
    return 1 if differ or len(ours) != count else 0


if __name__ == "__main__":
    sys.exit(main())
