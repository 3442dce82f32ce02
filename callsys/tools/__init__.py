"""Terminal tools built on :mod:`callsys.client`: ``callsys kiosk``, ``callsys clerk`` and
``callsys display``.

Importing this package registers the sub-commands (it is listed in ``callsys.cli.PLUGINS``).
"""

from . import clerk as clerk, display as display, kiosk as kiosk
