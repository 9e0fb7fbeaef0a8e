"""The shop (examples/shop) as AWS Lambda functions: one line more than the shop itself.

Package it, write its template, deploy it:

    framework package examples.serverless:app
    framework export sam examples.serverless:app -o template.json
    sam deploy --guided --template-file template.json

Run it locally the way Lambda runs it, against moto's server (python -m moto.server -p 5000):

    framework run examples.serverless:app --lambda \\
        --backend "aws://us-east-1?endpoint_url=http://127.0.0.1:5000"
"""

from __future__ import annotations

from examples.shop import app
from framework.aws import lambda_handler

__all__ = ["app", "handler"]

# --8<-- [start:handler]
handler = lambda_handler(app)  # the functions' handler setting: examples.serverless.handler
# --8<-- [end:handler]
