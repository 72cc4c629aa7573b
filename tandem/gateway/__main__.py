"""`python -m tandem.gateway [--host H] [--port P]`: what `tandem stack up` starts (the same as `tandem gateway`)."""

import argparse

from tandem.gateway.server import serve
from tandem.settings import Settings

parser = argparse.ArgumentParser(prog="python -m tandem.gateway")
parser.add_argument("--host")
parser.add_argument("--port", type=int)
args = parser.parse_args()
settings = Settings()
overrides = {k: v for k, v in {"gateway_host": args.host, "gateway_port": args.port}.items() if v is not None}
serve(settings.model_copy(update=overrides) if overrides else settings)
