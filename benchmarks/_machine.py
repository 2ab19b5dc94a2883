"""Machine and version facts recorded with every benchmark result (shared by run.py and scale.py)."""

from __future__ import annotations

import os
import platform
import subprocess


def version(dist):
    """Installed version of a distribution, or None."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(root):
    """The commit checked out at ``root`` and whether ``src/`` has uncommitted changes."""
    git = {}
    try:
        git["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                       timeout=10).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout
        git["src_modified"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return git


def cpus_available():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False
