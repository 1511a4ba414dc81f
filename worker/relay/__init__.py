"""The relay daemon: fan-out of committed events, the scheduler, circuit probes."""
