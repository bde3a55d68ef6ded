"""Firewall blocking: block decisions, nftables/ipset backends and feeds (EDL).

See docs/blocking.md. The ``blocker`` sink (:mod:`socd.block.sink`) turns alerts
into decisions (:mod:`socd.block.decisions`), pushes them to the kernel
(:mod:`socd.block.nft`, :mod:`socd.block.ipset`, as batches of parsed set elements,
:mod:`socd.block.elements`) and serves them to firewall appliances
(:mod:`socd.block.feeds`). Under systemd the kernel is changed by the privileged
helper ``socd block-helper`` (:mod:`socd.block.helper`, the only socd process with
CAP_NET_ADMIN), which socd asks over a Unix socket (:mod:`socd.block.protocol`).
"""
