"""`make demo`: run the request/reply example end to end against a fresh emulator.

Until the emulator and the provider land this prints what the demo will do.
"""

from __future__ import annotations


def main() -> int:
    """Entry point of ``make demo``."""
    print("The App2App demo arrives with the emulator (issue 3) and the provider (issue 5).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
