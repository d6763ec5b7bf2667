#!@busybox@/bin/sh
# busybox udhcpc's event script for the demo disk systems: the lease's address, netmask
# and default route on $interface (QEMU's user networking: 10.0.2.15/24 via 10.0.2.2).
export PATH=@busybox@/bin
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then
      ip route replace default via "${router%% *}" dev "$interface"
    fi
    if [ -n "$dns" ]; then
      for server in $dns; do echo "nameserver $server"; done >/etc/resolv.conf
    fi
    echo "reconcile-network: $interface $ip/${mask:-24} via ${router%% *}"
    ;;
esac
exit 0
