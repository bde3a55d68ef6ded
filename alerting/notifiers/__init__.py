"""Notifiers: the channels that deliver a rendered notification to people.

Each module implements the :class:`~socd.plugins.Notifier` protocol for one
channel (``email``, ``webhook``, ``telegram``, ``chat`` for Slack, Mattermost
and Teams, ``mqtt``, ``alertmanager``). They only shape and deliver: routing,
grouping, rendering, the durable send queue, rate limits and retries belong to
:mod:`socd.notify`. ``send`` tries once and raises
:class:`~socd.errors.NotifyError` with ``retryable`` telling the core whether
to try again. Payload builders are pure functions (see :mod:`.common`).
"""
