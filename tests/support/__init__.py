"""Test helpers shared by the suites: the emulator as a subprocess, raw clients, configs."""
