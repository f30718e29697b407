"""``nmt serve``: the HTTP application (``app``), its request and response schemas (``schemas``), the service that
holds the models and checks requests (``service``), the micro-batcher that translates concurrent requests together
(``batcher``), the supervisor of several server processes on one port (``workers``), and the page (``static/``).
Needs the ``serve`` extra (fastapi, uvicorn, python-multipart)."""
