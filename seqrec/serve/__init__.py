"""HTTP serving of a trained bundle: FastAPI app, micro-batched scoring and a demo shop page.

    seqrec serve --bundle runs/demo/bundle --port 8000   # then open http://127.0.0.1:8000/

`create_app` builds the app from a bundle folder (or a loaded `seqrec.bundle.Bundle`);
`run_server` runs it under uvicorn, which is what ``seqrec serve`` calls.
"""

from seqrec.serve.app import Recommender, ServeConfig, create_app, run_server

__all__ = ["Recommender", "ServeConfig", "create_app", "run_server"]
