"""Connectivity check from inside the VM: probes, latency, hops and the local cause of failures."""
