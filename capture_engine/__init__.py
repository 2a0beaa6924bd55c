"""Packet capture: Network Watcher filters, libpcap and raw-socket backends, pcap output."""
