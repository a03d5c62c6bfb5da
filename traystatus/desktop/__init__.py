"""Desktop integration without Qt: start at login (autostart), the menu entry and icons
(files), and what the session offers a tray app (check: tray host, notification server,
keychain). Used by ``traystatus doctor``, the tray app's Settings and the packaging; it
imports only traystatus.core and traystatus._paths.
"""
