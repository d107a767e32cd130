"""Seeing the wire: record (relay / sniff / pcap) and dissect byte streams."""
