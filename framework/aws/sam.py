"""The app deployed serverless: a template with its functions, triggers, API and roles.

``framework export sam APP`` writes ``template(...)`` with ``sam=True`` (functions as
``AWS::Serverless::Function`` whose ``CodeUri`` is the zip ``framework package`` builds, for
``sam deploy``); ``framework export cloudformation APP --lambda`` writes the same resources in
plain CloudFormation (``AWS::Lambda::Function`` with the zip in S3, for
``aws cloudformation deploy``). Both start from ``framework export cloudformation``'s queues,
topics, subscriptions and mail rules, and add:

- **one function per queue handler** (``@on_queue``, ``@on_topic``, ``@on_email``, endpoint
  subscriptions) and **one for the HTTP routes**, all running the same code and handler:
  ``lambda_handler`` serves whatever event arrives. Separate functions because each queue's
  function timeout follows that queue's visibility timeout (one shared function would take
  the longest, and AWS's guidance would then inflate every queue's visibility), because a
  flood on one queue then cannot take the concurrency the API needs, and because each role
  holds only its function's rights. The cost is a cold start per function rather than per
  app; the functions are small (one zip), and busy ones stay warm.
- **an event source mapping per handler**: ``ReportBatchItemFailures`` (the function answers
  ``batchItemFailures``), ``BatchSize`` from ``batch_size``, no batching window (the worker
  does not wait to fill a batch either, and ``batch_size`` never exceeds 10), and
  ``ScalingConfig.MaximumConcurrency`` from ``concurrency`` (Lambda's range is 2 to 1000).
- **timeouts**: a handler's function timeout is its ``visibility_timeout`` plus a second to
  settle, at most 900 s (Lambda's limit: a longer visibility timeout is refused, naming the
  queue). The queue's SQS visibility timeout is raised to six times the function timeout, as
  AWS advises for queues feeding Lambda, so a batch waiting for an invocation is not handed
  out twice; the handler's own deadline stays ``visibility_timeout``.
- **an HTTP API** (API Gateway v2, payload 2.0) with one route per app route, so requests no
  route serves are answered 404 by API Gateway without invoking the function, plus
  ``/openapi.json`` and ``/docs``. Authorizers, throttles, usage plans and the cache run in the
  function, as in ``framework run`` (HTTP APIs have no API keys, usage plans or caching), per
  execution environment. ``/metrics`` and the admin API are not routed: counts in one
  environment say little, and the invocation metrics reach CloudWatch from the logs.
- **least-privilege roles**: logs; for a handler, receiving, deleting and changing the
  visibility of its own queue; for every function, sending to the app's declared queues,
  publishing to its declared topics (and listing topics, which is how the backend finds a
  topic's ARN), and sending mail from the app's sender address only.
- **a WebSocket API per** ``app.websocket_api`` **path** (``websocket_template.py``), served
  by its own function (timed like the HTTP routes' function), with every function allowed to
  push to its connections.
- **outputs**: the API's URL, each queue's URL, each function's ARN, each WebSocket API's
  ``wss://`` and connection URLs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from framework.aws import websocket_template as websocket
from framework.backends.aws.cloudformation import logical_id
from framework.backends.aws.cloudformation import template as resources_template
from framework.exceptions import DeclarationError
from framework.registry import ConsumerSpec, QueueSpec, Registry, RouteSpec

__all__ = [
    "MAX_FUNCTION_TIMEOUT",
    "LambdaOptions",
    "function_timeout",
    "maximum_concurrency",
    "queue_visibility",
    "template",
]

Json = dict[str, Any]

MAX_FUNCTION_TIMEOUT = 900  # Lambda's longest, seconds
MAX_QUEUE_VISIBILITY = 43_200  # SQS's longest, seconds
VISIBILITY_FACTOR = 6  # AWS: a queue's visibility timeout at least 6 x the function timeout
SETTLE_SECONDS = 1  # after the handler's deadline, time to tell SQS the verdict
API_TIMEOUT = 30  # API Gateway HTTP APIs wait at most 30 s for an integration
_CONVERTER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([A-Za-z_]+)\}")


@dataclass(frozen=True, slots=True)
class LambdaOptions:
    """How the functions are built.

    Attributes:
        app_name: The app's name (descriptions, the mail rule set).
        handler: The functions' handler setting (``MODULE.handler``).
        environment: Environment variables every function gets.
        runtime: Lambda's runtime identifier.
        architecture: ``x86_64`` or ``arm64``; the package must be built for it.
        memory: Megabytes per function.
        code_uri: Where ``sam deploy`` finds the zip (``framework package``'s output).
        mail_sender: The only From address the functions may send mail as.
        cors: The app answers CORS preflights: ``OPTIONS`` routes are added.
        openapi: The app serves ``/openapi.json`` and ``/docs``.
    """

    app_name: str
    handler: str
    environment: dict[str, str] = field(default_factory=dict)
    runtime: str = "python3.11"
    architecture: str = "x86_64"
    memory: int = 512
    code_uri: str = "dist/app.zip"
    mail_sender: str | None = None
    cors: bool = False
    openapi: bool = True


def function_timeout(queue: QueueSpec) -> int:
    """The timeout, in seconds, of the function handling ``queue``.

    Raises:
        DeclarationError: If the visibility timeout needs more than Lambda's 900 seconds.
    """
    timeout = max(3, math.ceil(queue.visibility_timeout) + SETTLE_SECONDS)
    if timeout > MAX_FUNCTION_TIMEOUT:
        longest = MAX_FUNCTION_TIMEOUT - SETTLE_SECONDS
        raise DeclarationError(
            f"queue {queue.name!r}: visibility_timeout={queue.visibility_timeout:g} s needs a "
            f"Lambda function timeout of {timeout} s, and Lambda allows at most "
            f"{MAX_FUNCTION_TIMEOUT} s: lower visibility_timeout to {longest} s or less, or "
            "run this handler as a worker (framework run --workers-only)"
        )
    return timeout


def maximum_concurrency(queue: QueueSpec) -> int:
    """The event source mapping's ``MaximumConcurrency``: ``concurrency`` within 2..1000."""
    return max(2, min(1000, queue.concurrency))


def queue_visibility(queue: QueueSpec) -> int:
    """The SQS visibility timeout of a queue feeding a function: six function timeouts."""
    wanted = max(math.ceil(queue.visibility_timeout), VISIBILITY_FACTOR * function_timeout(queue))
    return min(MAX_QUEUE_VISIBILITY, wanted)


def _arn(resource: str) -> Json:
    return {"Fn::GetAtt": [resource, "Arn"]}


def _role(statements: list[Json]) -> Json:
    props: Json = {
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        },
        "ManagedPolicyArns": [
            {
                "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole"
            }
        ],
    }
    if statements:
        props["Policies"] = [
            {
                "PolicyName": "framework",
                "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
            }
        ]
    return {"Type": "AWS::IAM::Role", "Properties": props}


def _shared_statements(registry: Registry, options: LambdaOptions) -> list[Json]:
    """What every function may do: send to the app's queues, publish to its topics, mail."""
    statements: list[Json] = []
    queues = [_arn(logical_id("Queue", name)) for name in registry.queues]
    if queues:
        statements.append(
            {
                "Sid": "SendToTheAppsQueues",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
                "Resource": queues,
            }
        )
    topics = [{"Ref": logical_id("Topic", name)} for name in registry.topics]
    if topics:
        statements.append(
            {
                "Sid": "PublishToTheAppsTopics",
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": topics,
            }
        )
        statements.append(
            {
                "Sid": "FindTopicArns",
                "Effect": "Allow",
                "Action": "sns:ListTopics",
                "Resource": "*",
            }
        )
    if options.mail_sender:
        statements.append(
            {
                "Sid": "SendMailAsTheApp",
                "Effect": "Allow",
                "Action": ["ses:SendEmail", "ses:SendRawEmail"],
                "Resource": "*",
                "Condition": {"StringEquals": {"ses:FromAddress": options.mail_sender}},
            }
        )
    return statements


def _function(
    options: LambdaOptions,
    role_id: str,
    timeout: int,
    description: str,
    *,
    sam: bool,
) -> Json:
    props: Json = {
        "Description": description[:256],
        "Handler": options.handler,
        "Runtime": options.runtime,
        "Architectures": [options.architecture],
        "MemorySize": options.memory,
        "Timeout": timeout,
        "Role": _arn(role_id),
    }
    if options.environment:
        props["Environment"] = {"Variables": dict(options.environment)}
    if sam:
        props["CodeUri"] = options.code_uri
        return {"Type": "AWS::Serverless::Function", "Properties": props}
    props["Code"] = {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}}
    return {"Type": "AWS::Lambda::Function", "Properties": props}


def _consumer(
    consumer: ConsumerSpec, options: LambdaOptions, shared: list[Json], *, sam: bool
) -> Json:
    queue = consumer.queue
    queue_id = logical_id("Queue", queue.name)
    role_id = logical_id("Role", queue.name)
    function_id = logical_id("Function", queue.name)
    receive = {
        "Sid": "ReceiveFromItsQueue",
        "Effect": "Allow",
        "Action": [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
        ],
        "Resource": _arn(queue_id),
    }
    mapping: Json = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "EventSourceArn": _arn(queue_id),
            "FunctionName": {"Ref": function_id},
            "BatchSize": queue.batch_size,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": maximum_concurrency(queue)},
            "Enabled": True,
        },
    }
    return {
        role_id: _role([receive, *shared]),
        function_id: _function(
            options,
            role_id,
            function_timeout(queue),
            f"{options.app_name}: {consumer.kind} handler {consumer.name} of queue {queue.name}",
            sam=sam,
        ),
        logical_id("EventSourceMapping", queue.name): mapping,
    }


def _route_key(method: str, path: str) -> str:
    def plain(match: re.Match[str]) -> str:
        name, converter = match.group(1), match.group(2)
        return f"{{{name}+}}" if converter == "path" else f"{{{name}}}"

    return f"{method} {_CONVERTER.sub(plain, path)}"


def _api(
    routes: Sequence[RouteSpec], options: LambdaOptions, shared: list[Json], *, sam: bool
) -> Json:
    role_id, function_id, api_id = "ApiRole", "ApiFunction", "HttpApi"
    integration_id = "HttpApiIntegration"
    keys: list[str] = []
    for spec in routes:
        keys += [_route_key(m, spec.full_path) for m in spec.methods]
        if options.cors:
            keys.append(_route_key("OPTIONS", spec.full_path))
    if options.openapi:
        keys += ["GET /openapi.json", "GET /docs"]
    resources: Json = {
        role_id: _role(list(shared)),
        function_id: _function(
            options, role_id, API_TIMEOUT, f"{options.app_name}: HTTP routes", sam=sam
        ),
        api_id: {
            "Type": "AWS::ApiGatewayV2::Api",
            "Properties": {"Name": f"{options.app_name}-api", "ProtocolType": "HTTP"},
        },
        integration_id: {
            "Type": "AWS::ApiGatewayV2::Integration",
            "Properties": {
                "ApiId": {"Ref": api_id},
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": _arn(function_id),
                "PayloadFormatVersion": "2.0",
                "TimeoutInMillis": API_TIMEOUT * 1000,
            },
        },
        "HttpApiStage": {
            "Type": "AWS::ApiGatewayV2::Stage",
            "Properties": {"ApiId": {"Ref": api_id}, "StageName": "$default", "AutoDeploy": True},
        },
        "HttpApiInvokePermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": function_id},
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {
                    "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:"
                    "${AWS::AccountId}:${" + api_id + "}/*"
                },
            },
        },
    }
    for key in dict.fromkeys(keys):
        resources[logical_id("Route", key)] = {
            "Type": "AWS::ApiGatewayV2::Route",
            "Properties": {
                "ApiId": {"Ref": api_id},
                "RouteKey": key,
                "Target": {"Fn::Join": ["/", ["integrations", {"Ref": integration_id}]]},
            },
        }
    return resources


def template(
    registry: Registry,
    options: LambdaOptions,
    *,
    sam: bool = True,
    physical: Callable[[str], str] = lambda name: name,
) -> Json:
    """Return the template that deploys the app on Lambda.

    Args:
        registry: The app's declarations.
        options: How the functions are built.
        sam: ``AWS::Serverless::Function`` with ``CodeUri`` (``sam deploy``); else plain
            ``AWS::Lambda::Function`` with the zip in S3 (parameters ``CodeBucket``, ``CodeKey``).
        physical: Maps a framework queue or topic name to its AWS name.

    Raises:
        DeclarationError: If a queue's visibility timeout is longer than Lambda can honour.
    """
    doc = resources_template(registry, app_name=options.app_name, physical=physical)
    resources: Json = doc["Resources"]
    outputs: Json = doc["Outputs"]
    shared = _shared_statements(registry, options)
    if registry.websocket_apis:
        shared.append(websocket.manage_connections(registry))
    for consumer in registry.consumers.values():
        queue = consumer.queue
        queue_id = logical_id("Queue", queue.name)
        resources[queue_id]["Properties"]["VisibilityTimeout"] = queue_visibility(queue)
        resources.update(_consumer(consumer, options, shared, sam=sam))
        function_id = logical_id("Function", queue.name)
        outputs[function_id + "Arn"] = {
            "Description": f"ARN of the function handling queue {queue.name}",
            "Value": _arn(function_id),
        }
    if registry.routes:
        resources.update(_api(registry.routes, options, shared, sam=sam))
        outputs["ApiUrl"] = {
            "Description": "The HTTP API's URL",
            "Value": {
                "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"
            },
        }
        outputs["ApiFunctionArn"] = {
            "Description": "ARN of the function serving the HTTP routes",
            "Value": _arn("ApiFunction"),
        }
    for path, api in registry.websocket_apis.items():
        function_id = websocket.function_id(path)
        role_id = logical_id("WebSocketRole", path)
        function = _function(
            options, role_id, API_TIMEOUT, f"{options.app_name}: WebSocket API {path}", sam=sam
        )
        variables = function["Properties"].setdefault("Environment", {"Variables": {}})
        variables["Variables"]["FRAMEWORK_WEBSOCKET_PATH"] = path
        resources[role_id] = _role(list(shared))
        resources[function_id] = function
        resources.update(websocket.resources(registry, api, options.app_name))
        outputs.update(websocket.outputs(api))
    if registry.websocket_apis:
        endpoints = websocket.endpoints_variable(registry)
        for resource in resources.values():
            if resource["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
                props = resource["Properties"]
                props.setdefault("Environment", {"Variables": {}})
                props["Environment"]["Variables"]["FRAMEWORK_WEBSOCKET_ENDPOINTS"] = endpoints
    out: Json = {"AWSTemplateFormatVersion": "2010-09-09"}
    if sam:
        out["Transform"] = "AWS::Serverless-2016-10-31"
    out["Description"] = f"The framework app {options.app_name!r} on AWS Lambda"
    if not sam:
        out["Parameters"] = {
            "CodeBucket": {
                "Type": "String",
                "Description": "S3 bucket holding the zip of `framework package`",
            },
            "CodeKey": {"Type": "String", "Description": "S3 key of the zip"},
        }
    out["Resources"] = resources
    out["Outputs"] = outputs
    return out
