"""The tenant portal: a server-rendered web UI for the people who own the endpoints.

`create_portal` builds it; `webhooks api` serves it at ``/portal`` and it mounts alone in
any ASGI application. Every page calls the same service layer as the CLI and the API.
"""

from worker.portal.app import create_portal

__all__ = ["create_portal"]
