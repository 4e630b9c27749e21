"""The live server: the FastAPI app, live markets driven in wall time, their sessions and
durable log, and the browser page (`static/`)."""
