"""The app on AWS Lambda: ``handler = lambda_handler(app)`` (SPEC section 8).

``framework.aws`` is the serverless deployment of an app; ``framework.backends.aws`` is the
``aws://`` backend it runs on.
"""

from framework.aws.event_shapes import UnknownEventError
from framework.aws.handler import LambdaHandler, lambda_handler

__all__ = ["LambdaHandler", "UnknownEventError", "lambda_handler"]
