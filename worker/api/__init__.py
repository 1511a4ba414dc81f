"""The management HTTP API over the service layer (FastAPI; needs the `api` extra).

``create_app(settings=None, *, auth=None)`` builds it; `webhooks api` serves it.
"""

from worker.api.app import create_app
from worker.api.auth import Auth, Principal

__all__ = ["Auth", "Principal", "create_app"]
