"""The analyst console: a web application served by socd on its own listener (issue 19).

Server-rendered pages (aiohttp + Jinja2, htmx vendored under ``static/``) where the
incident response team works its alerts, incidents, IoC lists, blocks and reports.
The core (this package's :mod:`~socd.console.app`, :mod:`~socd.console.auth`,
:mod:`~socd.console.sessions`, :mod:`~socd.console.csrf`, :mod:`~socd.console.users`,
:mod:`~socd.console.ldap`) signs users in and protects every route; the pages are in
:mod:`socd.console.views`. docs/console.md describes the set-up.
"""
