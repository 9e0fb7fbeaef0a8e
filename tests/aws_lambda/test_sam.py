"""``framework export sam`` and ``export cloudformation --lambda``: functions, triggers, roles."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from framework.aws import websocket_template as websocket
from framework.aws.function_options import ENTRY, options_for
from framework.aws.sam import template
from framework.backends.aws.cloudformation import logical_id
from framework.backends.aws.settings import physical_name
from framework.exceptions import DeclarationError
from tests.aws_lambda import deploy_app
from tests.cli.conftest import framework

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [
    "examples.shop:app",
    "examples.api:app",
    "examples.newsletter:app",
    "examples.serverless:app",
    "examples.notifications:app",
    "tests.aws_lambda.deploy_app:app",
]


def deployed() -> dict[str, Any]:
    options = options_for(deploy_app.app, "tests.aws_lambda.deploy_app:app")
    return template(deploy_app.app.registry, options, physical=physical_name)


def of_type(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in doc["Resources"].items() if v["Type"] == kind}


def test_each_handler_gets_a_function_timed_by_its_visibility_timeout() -> None:
    """Timeout = visibility + 1 s; the queue's SQS visibility is six function timeouts."""
    doc = deployed()
    slow = doc["Resources"][logical_id("Function", "slow")]["Properties"]
    assert slow["Timeout"] == 121
    assert slow["Handler"] == "tests.aws_lambda.deploy_app.handler"  # the module's own
    assert slow["CodeUri"] == "dist/deployed.zip"
    assert slow["Runtime"] == "python3.11"
    queue = doc["Resources"][logical_id("Queue", "slow")]["Properties"]
    assert queue["VisibilityTimeout"] == 6 * 121
    dlq = doc["Resources"][logical_id("Queue", "slow-dlq")]["Properties"]
    assert dlq["VisibilityTimeout"] == 120  # no function reads it: unchanged


def test_event_source_mappings_report_batch_item_failures() -> None:
    """Batch size from batch_size, MaximumConcurrency from concurrency clamped to 2..1000."""
    doc = deployed()
    mappings = {
        k: v["Properties"] for k, v in of_type(doc, "AWS::Lambda::EventSourceMapping").items()
    }
    slow = mappings[logical_id("EventSourceMapping", "slow")]
    wide = mappings[logical_id("EventSourceMapping", "wide")]
    assert slow["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert (slow["BatchSize"], slow["ScalingConfig"]["MaximumConcurrency"]) == (4, 2)
    assert (wide["BatchSize"], wide["ScalingConfig"]["MaximumConcurrency"]) == (10, 1000)
    assert slow["EventSourceArn"] == {"Fn::GetAtt": [logical_id("Queue", "slow"), "Arn"]}


def test_roles_receive_only_from_their_own_queue() -> None:
    """A handler's role may receive from its queue alone; mail only from the app's sender."""
    doc = deployed()
    role = doc["Resources"][logical_id("Role", "slow")]["Properties"]
    statements = {s["Sid"]: s for s in role["Policies"][0]["PolicyDocument"]["Statement"]}
    receive = statements["ReceiveFromItsQueue"]
    assert receive["Resource"] == {"Fn::GetAtt": [logical_id("Queue", "slow"), "Arn"]}
    assert "sqs:ReceiveMessage" not in statements["SendToTheAppsQueues"]["Action"]
    mail = statements["SendMailAsTheApp"]
    assert mail["Condition"] == {"StringEquals": {"ses:FromAddress": "ops@deployed.example"}}
    api_role = doc["Resources"]["ApiRole"]["Properties"]
    api_sids = {s["Sid"] for s in api_role["Policies"][0]["PolicyDocument"]["Statement"]}
    assert "ReceiveFromItsQueue" not in api_sids


def test_routes_become_http_api_routes_and_outputs() -> None:
    """Each route (converters dropped) and the OpenAPI pages are routes; the URL is an output."""
    doc = deployed()
    keys = {
        v["Properties"]["RouteKey"]
        for v in of_type(doc, "AWS::ApiGatewayV2::Route").values()
        if v["Properties"]["ApiId"] == {"Ref": "HttpApi"}
    }
    assert keys == {"GET /items/{item_id}", "GET /openapi.json", "GET /docs"}
    integration = doc["Resources"]["HttpApiIntegration"]
    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"
    assert "ApiUrl" in doc["Outputs"]
    assert logical_id("Function", "slow") + "Arn" in doc["Outputs"]
    assert logical_id("Queue", "slow") + "Url" in doc["Outputs"]


def test_a_visibility_timeout_lambda_cannot_honour_is_refused() -> None:
    """Over 899 s of visibility timeout the template is refused, naming queue and limit."""
    options = options_for(deploy_app.too_long, "tests.aws_lambda.deploy_app:too_long")
    with pytest.raises(DeclarationError, match=r"queue 'batch'.*at most 900 s"):
        template(deploy_app.too_long.registry, options)
    result = framework("export", "sam", "tests.aws_lambda.deploy_app:too_long", cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.startswith("error: queue 'batch': visibility_timeout=1800 s")
    assert "Traceback" not in result.stderr


def test_apps_without_their_own_handler_use_the_framework_entry() -> None:
    """An example without ``handler = lambda_handler(app)`` deploys through FRAMEWORK_APP."""
    result = framework("export", "cloudformation", "examples.shop:app", "--lambda", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    functions = of_type(doc, "AWS::Lambda::Function")
    assert functions
    for function in functions.values():
        props = function["Properties"]
        assert props["Handler"] == ENTRY
        assert props["Environment"]["Variables"]["FRAMEWORK_APP"] == "examples.shop:app"
        assert props["Code"] == {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}}
    assert "Transform" not in doc


def test_the_serverless_example_uses_its_own_handler() -> None:
    """examples/serverless defines ``handler``: the functions' handler setting names it."""
    result = framework("export", "sam", "examples.serverless:app", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    handlers = {
        f["Properties"]["Handler"] for f in of_type(doc, "AWS::Serverless::Function").values()
    }
    assert handlers == {"examples.serverless.handler"}
    assert doc["Transform"] == "AWS::Serverless-2016-10-31"


@pytest.mark.timeout(150)  # cfn-lint loads its resource specs: tens of seconds on a busy machine
@pytest.mark.parametrize("target", EXAMPLES)
@pytest.mark.parametrize("form", [("sam",), ("cloudformation", "--lambda")])
def test_cfn_lint_passes_on_every_examples_template(
    target: str, form: tuple[str, ...], tmp_path: Path
) -> None:
    """cfn-lint finds no error or warning in the exported templates of the examples."""
    pytest.importorskip("cfnlint", reason="cfn-lint is in the dev extra")
    out = tmp_path / "template.json"
    result = framework("export", *form, target, "-o", str(out), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lint = shutil.which("cfn-lint") or ""
    command = [lint] if lint else [sys.executable, "-m", "cfnlint"]
    checked = subprocess.run(
        [*command, str(out)], capture_output=True, text=True, timeout=120, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_longest_visibility_timeout_lambda_honours_is_899_seconds() -> None:
    """899 s fits Lambda's 900 s with the second to settle; 899.5 s does not."""
    from framework.aws.sam import function_timeout, queue_visibility
    from framework.registry import QueueSpec

    longest = QueueSpec.from_options("q", visibility_timeout=899)
    assert function_timeout(longest) == 900
    assert queue_visibility(longest) == 5400
    with pytest.raises(DeclarationError, match="899 s or less"):
        function_timeout(QueueSpec.from_options("q", visibility_timeout=899.5))
    assert function_timeout(QueueSpec.from_options("q", visibility_timeout=0.5)) == 3


def test_a_websocket_api_becomes_an_api_gateway_websocket_api() -> None:
    """ProtocolType WEBSOCKET, routes selected by the API's field, $default always there."""
    doc = deployed()
    api = doc["Resources"][websocket.api_id("/live")]
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert api["Properties"]["RouteSelectionExpression"] == "$request.body.type"
    routes = {
        v["Properties"]["RouteKey"]: v["Properties"]
        for v in of_type(doc, "AWS::ApiGatewayV2::Route").values()
        if v["Properties"]["ApiId"] == {"Ref": websocket.api_id("/live")}
    }
    assert set(routes) == {"$connect", "$disconnect", "$default", "say"}
    responses = of_type(doc, "AWS::ApiGatewayV2::RouteResponse").values()
    answered = {r["Properties"]["RouteId"]["Ref"] for r in responses}
    assert answered == {
        logical_id("WebSocketRoute", "/live $default"),
        logical_id("WebSocketRoute", "/live say"),
    }
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"
    (authorizer,) = of_type(doc, "AWS::ApiGatewayV2::Authorizer").values()
    assert authorizer["Properties"]["AuthorizerType"] == "REQUEST"
    uri = authorizer["Properties"]["AuthorizerUri"]["Fn::Sub"]
    assert "${" + websocket.function_id("/live") + ".Arn}/invocations" in uri
    stage = doc["Resources"][logical_id("WebSocketStage", "/live")]
    assert stage["Properties"]["StageName"] == "prod"
    assert len(stage["DependsOn"]) == 4


def test_every_function_may_push_and_knows_the_connection_url() -> None:
    """Each role may ManageConnections on the API; each function gets its connection URL."""
    doc = deployed()
    functions = of_type(doc, "AWS::Serverless::Function")
    assert len(functions) == 4  # two queues, the HTTP routes, the WebSocket API
    for function_id, function in functions.items():
        variables = function["Properties"]["Environment"]["Variables"]
        endpoints = variables["FRAMEWORK_WEBSOCKET_ENDPOINTS"]["Fn::Sub"]
        assert json.loads(endpoints) == {
            "/live": "https://${"
            + websocket.api_id("/live")
            + "}.execute-api.${AWS::Region}.${AWS::URLSuffix}/prod"
        }
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        policy = doc["Resources"][role_id]["Properties"]["Policies"][0]["PolicyDocument"]
        sids = {s["Sid"]: s for s in policy["Statement"]}
        manage = sids["ManageTheAppsWebSocketConnections"]
        assert manage["Action"] == "execute-api:ManageConnections"
        if function_id == websocket.function_id("/live"):
            assert variables["FRAMEWORK_WEBSOCKET_PATH"] == "/live"
    url = doc["Outputs"][logical_id("WebSocketUrl", "/live")]["Value"]["Fn::Sub"]
    assert url.startswith("wss://${" + websocket.api_id("/live") + "}")
