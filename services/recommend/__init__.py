"""The recommend service: ``create_app()`` (Litestar) and ``server.run()``; see DESIGN.md, serving path."""
