"""The app's WebSocket APIs in the serverless template: API Gateway's WebSocket APIs.

Per ``app.websocket_api`` path, ``framework export sam`` declares:

- an ``AWS::ApiGatewayV2::Api`` with ``ProtocolType: WEBSOCKET`` and
  ``RouteSelectionExpression: $request.body.FIELD`` (the API's ``route_selection``), so API
  Gateway selects the route the gateway would;
- one Lambda proxy integration with the API's function, and a route per declared route, plus
  ``$default`` always (a message naming no route is answered ``unknown_route`` by the
  function, as under ``framework run``, not by API Gateway); each message route is two-way
  (a route response), so the function's answer (the handler's return value, or the
  ``{"error": ...}`` message) reaches the caller;
- with ``auth=`` on ``$connect``: a ``REQUEST`` authorizer run by the same function, whose
  policy's context carries the principal to every later event of the connection. It has no
  identity source, because the credential may come in a header or the query string and API
  Gateway would insist on both; the function refuses a missing one with 401;
- the permission for API Gateway to invoke the function, and a stage (``prod``, deployed on
  every change) whose connection URL every function gets in
  ``FRAMEWORK_WEBSOCKET_ENDPOINTS``, with ``execute-api:ManageConnections`` on the API, so
  any handler may push (``app.connections``);
- outputs: the ``wss://`` URL clients connect to and the connection URL.
"""

from __future__ import annotations

import json
from typing import Any

from framework.backends.aws.cloudformation import logical_id
from framework.registry import Registry, WebSocketAPISpec
from framework.websocket import CONNECT, DEFAULT, DISCONNECT

__all__ = [
    "STAGE",
    "api_id",
    "endpoints_variable",
    "function_id",
    "manage_connections",
    "outputs",
    "resources",
]

Json = dict[str, Any]

STAGE = "prod"
_ACCOUNT_ARN = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}"
_HOST = ".execute-api.${AWS::Region}.${AWS::URLSuffix}/" + STAGE


def api_id(path: str) -> str:
    """The logical id of the WebSocket API at ``path``."""
    return logical_id("WebSocketApi", path)


def function_id(path: str) -> str:
    """The logical id of the function serving the WebSocket API at ``path``."""
    return logical_id("WebSocketFunction", path)


def _invocation_uri(function: str) -> Json:
    return {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
        "functions/${" + function + ".Arn}/invocations"
    }


def endpoints_variable(registry: Registry) -> Json:
    """``FRAMEWORK_WEBSOCKET_ENDPOINTS``: each API's connection URL, as JSON by path."""
    text = json.dumps(
        {path: f"https://${{{api_id(path)}}}{_HOST}" for path in registry.websocket_apis}
    )
    return {"Fn::Sub": text}


def manage_connections(registry: Registry) -> Json:
    """The statement letting a function push to, close and describe the APIs' connections."""
    return {
        "Sid": "ManageTheAppsWebSocketConnections",
        "Effect": "Allow",
        "Action": "execute-api:ManageConnections",
        "Resource": [
            {"Fn::Sub": _ACCOUNT_ARN + ":${" + api_id(path) + "}/" + STAGE + "/*"}
            for path in registry.websocket_apis
        ],
    }


def resources(registry: Registry, api: WebSocketAPISpec, app_name: str) -> Json:
    """The API, integration, routes, route responses, authorizer, permission and stage of
    ``api`` (its function and role are the caller's, as ``function_id(api.path)``)."""
    path = api.path
    the_api, function = api_id(path), function_id(path)
    integration = logical_id("WebSocketIntegration", path)
    declared = {r.route: r for r in registry.websocket_routes if r.path == path}
    out: Json = {
        the_api: {
            "Type": "AWS::ApiGatewayV2::Api",
            "Properties": {
                "Name": f"{app_name}-websocket{path.replace('/', '-').rstrip('-')}",
                "ProtocolType": "WEBSOCKET",
                "RouteSelectionExpression": f"$request.body.{api.route_selection}",
            },
        },
        integration: {
            "Type": "AWS::ApiGatewayV2::Integration",
            "Properties": {
                "ApiId": {"Ref": the_api},
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": _invocation_uri(function),
            },
        },
        logical_id("WebSocketPermission", path): {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": function},
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {"Fn::Sub": _ACCOUNT_ARN + ":${" + the_api + "}/*"},
            },
        },
    }
    connect = declared.get(CONNECT)
    authorizer = logical_id("WebSocketAuthorizer", path)
    if connect is not None and connect.auth is not None:
        out[authorizer] = {
            "Type": "AWS::ApiGatewayV2::Authorizer",
            "Properties": {
                "ApiId": {"Ref": the_api},
                "Name": f"{app_name}-connect",
                "AuthorizerType": "REQUEST",
                "AuthorizerUri": _invocation_uri(function),
            },
        }
    routes = [r for r in declared if r not in (CONNECT, DISCONNECT, DEFAULT)]
    keys = [k for k in (CONNECT, DISCONNECT) if k in declared] + [DEFAULT, *routes]
    route_ids = []
    for key in keys:
        route_id = logical_id("WebSocketRoute", f"{path} {key}")
        route_ids.append(route_id)
        props: Json = {
            "ApiId": {"Ref": the_api},
            "RouteKey": key,
            "Target": {"Fn::Join": ["/", ["integrations", {"Ref": integration}]]},
        }
        if key == CONNECT and authorizer in out:
            props.update(AuthorizationType="CUSTOM", AuthorizerId={"Ref": authorizer})
        if key not in (CONNECT, DISCONNECT):
            props["RouteResponseSelectionExpression"] = "$default"
            out[logical_id("WebSocketRouteResponse", f"{path} {key}")] = {
                "Type": "AWS::ApiGatewayV2::RouteResponse",
                "Properties": {
                    "ApiId": {"Ref": the_api},
                    "RouteId": {"Ref": route_id},
                    "RouteResponseKey": "$default",
                },
            }
        out[route_id] = {"Type": "AWS::ApiGatewayV2::Route", "Properties": props}
    out[logical_id("WebSocketStage", path)] = {
        "Type": "AWS::ApiGatewayV2::Stage",
        # Deployed once its routes exist, then again on every change.
        "DependsOn": route_ids,
        "Properties": {"ApiId": {"Ref": the_api}, "StageName": STAGE, "AutoDeploy": True},
    }
    return out


def outputs(api: WebSocketAPISpec) -> Json:
    """The ``wss://`` URL of the API and its connection URL."""
    the_api = api_id(api.path)
    return {
        logical_id("WebSocketUrl", api.path): {
            "Description": f"The WebSocket API {api.path}: clients connect here",
            "Value": {"Fn::Sub": "wss://${" + the_api + "}" + _HOST},
        },
        logical_id("WebSocketConnectionsUrl", api.path): {
            "Description": f"The connection URL (management API) of WebSocket API {api.path}",
            "Value": {"Fn::Sub": "https://${" + the_api + "}" + _HOST},
        },
    }
