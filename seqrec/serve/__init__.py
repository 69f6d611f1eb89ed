"""HTTP serving of a trained bundle: FastAPI app, micro-batched scoring and a demo shop page.

    seqrec serve --bundle runs/demo/bundle --port 8000   # then open http://127.0.0.1:8000/

`create_app` builds the app from a bundle folder (or a loaded `seqrec.bundle.Bundle`);
`run_server` runs it under uvicorn, which is what ``seqrec serve`` calls. The modules, one job
each: `schemas` (options and request / response models), `scoring` (the runtime of the raw
scores), `recommender` (lookup and ranking), `batching` (concurrent requests scored together),
`strict_json` (non-finite numbers refused, errors as JSON), `app` (routes, error handling, body
size limit) and `server` (uvicorn).
"""

from seqrec.serve.app import create_app
from seqrec.serve.recommender import Recommender
from seqrec.serve.schemas import ServeConfig
from seqrec.serve.server import run_server

__all__ = ["Recommender", "ServeConfig", "create_app", "run_server"]
