"""The console's pages, one module per page group; each exposes ``routes() -> list[Route]`` (see
:data:`crmbridge.console.app.PAGE_MODULES`)."""
