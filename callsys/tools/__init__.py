"""Terminal tools built on :mod:`callsys.client`: ``callsys kiosk`` and ``callsys clerk``.

Importing this package registers both sub-commands (it is listed in ``callsys.cli.PLUGINS``).
"""

from . import clerk as clerk, kiosk as kiosk
