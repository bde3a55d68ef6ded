"""Firewall blocking: block decisions, nftables/ipset backends and feeds (EDL).

See docs/blocking.md. The ``blocker`` sink (:mod:`socd.block.sink`) turns alerts
into decisions (:mod:`socd.block.decisions`), pushes them to the kernel
(:mod:`socd.block.nft`, :mod:`socd.block.ipset`) and serves them to firewall
appliances (:mod:`socd.block.feeds`).
"""
