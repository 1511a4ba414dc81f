"""The Django application of `producers.django`: it brings ``manage.py webhooks_migrate``."""

from __future__ import annotations

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Add ``"producers.django"`` to INSTALLED_APPS for the management command."""

    name = "producers.django"
    label = "webhooks_outbox"
    verbose_name = "Webhooks outbox"
