"""Terminal tools built on :mod:`callsys.client`: ``callsys kiosk``, ``callsys clerk`` and
``callsys display``; ``callsys dashboard`` (the managers' cockpit); ``callsys demo`` runs the server and a live crowd together.

Importing this package registers the sub-commands (it is listed in ``callsys.cli.PLUGINS``).
"""

from . import clerk as clerk, dashboard as dashboard, demo as demo, display as display, kiosk as kiosk
