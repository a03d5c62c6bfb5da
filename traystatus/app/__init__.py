"""The PySide6 tray app: renders what traystatus.core reports; computes nothing itself.

adapter.py wraps the core's Monitor in one QObject; tray.py, details.py and settings.py are
thin widgets connected to it; notify_policy.py decides (no Qt) and notifications.py sends.
"""
